-- One row per message per observed server. A replay repeats rows with the same sorting key, which
-- ReplacingMergeTree folds (read with FINAL, as the views do): so the same message counts once,
-- however often and in whatever batches it arrives.
CREATE TABLE IF NOT EXISTS server_messages
(
    server_id    String,
    day          Date,
    message_key  String,
    event_time   DateTime64(3, 'UTC'),
    total_bytes  UInt64,
    build        Nullable(String),
    evidence     LowCardinality(String)
)
ENGINE = ReplacingMergeTree(event_time)
PARTITION BY toYYYYMM(day)
ORDER BY (server_id, day, message_key)
SETTINGS non_replicated_deduplication_window = 10000;

-- What the sink inserts: folded observations from mail.observations, each with its messages as
-- parallel arrays (key, epoch milliseconds, bytes). Nothing is kept here (Null engine), the view
-- below writes one server_messages row per message.
CREATE TABLE IF NOT EXISTS observations
(
    server_id      String,
    build          Nullable(String),
    evidence       LowCardinality(String),
    message_keys   Array(String),
    message_times  Array(Int64),
    message_sizes  Array(UInt64)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS observation_messages TO server_messages AS
SELECT
    server_id,
    toDate(fromUnixTimestamp64Milli(message.2, 'UTC')) AS day,
    message.1 AS message_key,
    fromUnixTimestamp64Milli(message.2, 'UTC') AS event_time,
    message.3 AS total_bytes,
    build,
    evidence
FROM observations
ARRAY JOIN arrayZip(message_keys, message_times, message_sizes) AS message;
