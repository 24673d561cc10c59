-- The gap-safe horizon: readers of the log see only transactions older than the oldest
-- one still running anywhere in the cluster. Returns the horizon, how many committed
-- events wait behind it, and the session that holds it back (the oldest transaction
-- with an id, in any database).
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon,
       (SELECT count(*) FROM {schema}.{events}
            WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint) AS waiting,
       a.pid,
       a.datname,
       a.usename,
       a.application_name,
       a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS open_for,
       left(regexp_replace(a.query, '\s+', ' ', 'g'), 120) AS query
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT * FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
    ORDER BY age(backend_xid) DESC LIMIT 1
) AS a ON true
