-- Latest decision per server (the newest version wins). The `servers` view reads it with FINAL.
CREATE TABLE IF NOT EXISTS server_state
(
    server_id                 String,
    server                    String,
    org                       Nullable(String),
    product                   Nullable(String),
    build                     Nullable(String),
    status                    LowCardinality(String),
    stage                     UInt8,
    first_detected            Nullable(DateTime64(3, 'UTC')),
    throttle_enabled_date     Nullable(Date),
    blocking_enabled_date     Nullable(Date),
    next_stage_start_date     Nullable(Date),
    next_stage_throttle_rate  Nullable(UInt8),
    next_stage_block_rate     Nullable(UInt8),
    recommended_builds        Array(String),
    reason                    String,
    last_decided              DateTime64(3, 'UTC'),
    version                   UInt64,
    report_only               Bool DEFAULT false
)
ENGINE = ReplacingMergeTree(version)
ORDER BY server_id
SETTINGS non_replicated_deduplication_window = 10000;
-- A table created before report-only mode existed gets its column (a no-op on a new one).
ALTER TABLE server_state ADD COLUMN IF NOT EXISTS report_only Bool DEFAULT false;
