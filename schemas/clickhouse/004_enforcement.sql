-- Every deferred (throttle) or rejected (block) SMTP attempt, as the MTAs report on mail.enforcement,
-- and in report-only mode every accepted attempt that would have been (would-throttle, would-block).
CREATE TABLE IF NOT EXISTS enforcement
(
    server_id         String,
    hostname          String,
    org               Nullable(String),
    at                DateTime64(3, 'UTC'),
    action            LowCardinality(String),
    stage             UInt8,
    decision_version  UInt64,
    client_address    Nullable(String),
    helo_name         Nullable(String),
    topic_partition   UInt16,
    topic_offset      UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (server_id, at, topic_partition, topic_offset)
SETTINGS non_replicated_deduplication_window = 10000;
