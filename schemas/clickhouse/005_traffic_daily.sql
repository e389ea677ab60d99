-- Messages and bytes per server per day.
CREATE OR REPLACE VIEW traffic_daily AS
SELECT server_id, day, count() AS messages, sum(total_bytes) AS bytes
FROM server_messages FINAL
GROUP BY server_id, day;
