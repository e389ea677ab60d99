-- Pauses and exemptions: every control command from mail.control with its outcome, and the ones
-- the config file sets (source 'config', written as the sink starts). A command read again (after
-- a restart, or once per partition it reached) repeats its command_id: ReplacingMergeTree folds it.
CREATE TABLE IF NOT EXISTS control_log
(
    command_id   String,
    issued_at    Nullable(DateTime64(3, 'UTC')),
    action       LowCardinality(String),
    target       String,
    start_date   Nullable(Date),
    until_date   Nullable(Date),
    reason       String,
    issued_by    String,
    source       LowCardinality(String),
    outcome      LowCardinality(String),
    detail       String
)
ENGINE = ReplacingMergeTree
ORDER BY command_id
SETTINGS non_replicated_deduplication_window = 10000;
