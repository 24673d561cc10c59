-- Each projection's checkpoint, what lies after it in the log (every aggregate type: a
-- projection scoped to some reads only theirs), its recorded failures, a pending
-- operator request, where its failure policy stopped it (if it did), and the session
-- that holds its lease (the advisory lock ($2, hashtext('<schema>.<name>')), $2 being the
-- leases' lock space, see src/lease.rs), and the state of the build it is the consumer
-- of, if it is one (schema version 10). $1: only this projection, or NULL for all.
SELECT p.projection_name,
       p.last_processed_transaction,
       p.last_processed_position,
       p.last_processed_at,
       -- A retired build's checkpoint stays where it stopped: nothing is counted behind it.
       CASE WHEN b.state = 'retired' THEN 0 ELSE
       (SELECT count(*) FROM (SELECT 1 FROM {schema}.{events} e
            WHERE (e.transaction_id, e.global_position)
                > (p.last_processed_transaction, p.last_processed_position)
            LIMIT 10000000) AS t) END AS behind,
       CASE WHEN b.state = 'retired' THEN NULL ELSE
       extract(epoch FROM now() - (SELECT min(e.recorded_at) FROM {schema}.{events} e
            WHERE (e.transaction_id, e.global_position)
                > (p.last_processed_transaction, p.last_processed_position)))::float8 END AS behind_seconds,
       (SELECT count(*) FROM {schema}.{failures} f WHERE f.projection_name = p.projection_name) AS failures,
       p.request,
       p.requested_at,
       h.pid,
       h.application_name,
       h.client_addr,
       p.stopped,
       b.state AS build_state
FROM {schema}.{positions} p
LEFT JOIN {schema}.{positions}_builds b
       ON b.consumer_name = regexp_replace(p.projection_name, '#[0-9]+/[0-9]+$', '')
LEFT JOIN LATERAL (
    SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = $2::int8::oid
      AND l.objid = ((hashtext('{schema}.' || p.projection_name)::bigint + 4294967296) % 4294967296)::oid
    LIMIT 1
) AS h ON true
WHERE $1::text IS NULL OR p.projection_name = $1
ORDER BY p.projection_name
