-- Every enforcement decision, as published on mail.decisions.
-- Replays repeat (server_id, version): ReplacingMergeTree folds them, and the insert
-- deduplication window drops a repeated batch outright.
CREATE TABLE IF NOT EXISTS decisions
(
    server_id                 String,
    org                       Nullable(String),
    hostname                  String,
    product                   Nullable(String),
    build                     Nullable(String),
    status                    LowCardinality(String),
    stage                     UInt8,
    throttle_minutes_per_hour UInt8,
    block_minutes_per_hour    UInt8,
    first_detected            Nullable(DateTime64(3, 'UTC')),
    throttle_enabled_date     Nullable(Date),
    blocking_enabled_date     Nullable(Date),
    next_stage_start_date     Nullable(Date),
    next_stage_throttle_rate  Nullable(UInt8),
    next_stage_block_rate     Nullable(UInt8),
    recommended_builds        Array(String),
    reason                    String,
    smtp_reply                Nullable(String),
    decided_at                DateTime64(3, 'UTC'),
    version                   UInt64,
    report_only               Bool DEFAULT false,
    -- From which moment each stage applies, pauses included (pipeline.domain.schedule).
    schedule                  Array(Tuple(start DateTime64(3, 'UTC'), stage UInt8, throttle_minutes_per_hour UInt8,
                                          block_minutes_per_hour UInt8, paused Bool))
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (server_id, version)
SETTINGS non_replicated_deduplication_window = 10000;
-- A table created before report-only mode existed gets its column (a no-op on a new one).
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS report_only Bool DEFAULT false;
-- ... and one created before decisions carried their schedule.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS schedule Array(Tuple(start DateTime64(3, 'UTC'), stage UInt8,
    throttle_minutes_per_hour UInt8, block_minutes_per_hour UInt8, paused Bool));
