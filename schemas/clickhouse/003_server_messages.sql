-- One row per message per observed server, from mail.observations. A replay repeats rows with the
-- same sorting key, which ReplacingMergeTree folds (read with FINAL, as the views do).
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
