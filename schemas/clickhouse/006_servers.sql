-- The out-of-date servers report: the latest decision per server with its traffic. "Last 24 h"
-- is counted back from the newest event the pipeline has seen (event time, so replays agree).
-- A server whose messages are not written yet shows NULL traffic, not zeros. `deferred` and
-- `rejected` count the SMTP attempts MTAs answered 450 4.7.230 / 550 5.7.230 (mail.enforcement);
-- `would_defer` and `would_reject` those they accepted in report-only mode.
CREATE OR REPLACE VIEW servers AS
WITH (SELECT max(event_time) FROM server_messages) AS newest
SELECT
    s.server_id AS server_id, s.server AS server, s.org AS org, s.product AS product, s.build AS build,
    s.status AS status, s.stage AS stage, s.first_detected AS first_detected,
    s.throttle_enabled_date AS throttle_enabled_date, s.blocking_enabled_date AS blocking_enabled_date,
    s.next_stage_start_date AS next_stage_start_date, s.next_stage_throttle_rate AS next_stage_throttle_rate,
    s.next_stage_block_rate AS next_stage_block_rate, s.recommended_builds AS recommended_builds,
    s.reason AS reason,
    if(empty(t.server_id), NULL, t.last_seen) AS last_seen,
    if(empty(t.server_id), NULL, t.messages_last_24h) AS messages_last_24h,
    e.deferred AS deferred, e.rejected AS rejected,
    s.report_only AS report_only, e.would_defer AS would_defer, e.would_reject AS would_reject,
    s.version AS version
FROM server_state AS s FINAL
LEFT JOIN
(
    SELECT server_id, max(event_time) AS last_seen, countIf(event_time > newest - INTERVAL 24 HOUR) AS messages_last_24h
    FROM server_messages FINAL
    GROUP BY server_id
) AS t ON t.server_id = s.server_id
LEFT JOIN
(
    SELECT server_id, countIf(action = 'throttle') AS deferred, countIf(action = 'block') AS rejected,
           countIf(action = 'would-throttle') AS would_defer, countIf(action = 'would-block') AS would_reject
    FROM enforcement FINAL
    GROUP BY server_id
) AS e ON e.server_id = s.server_id;
