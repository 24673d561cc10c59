-- The store at a glance: events, streams, bytes (table and indexes), snapshot coverage
-- (streams with a snapshot, and the events on average that a load reads after it).
SELECT (SELECT count(*) FROM {schema}.{events}) AS events,
       count(*) AS streams,
       count(s.version) AS snapshotted,
       coalesce(avg(st.newest - coalesce(s.version, 0)), 0)::float8 AS tail_after_snapshot,
       pg_total_relation_size(to_regclass('{schema}.{events}')) AS bytes
FROM (SELECT aggregate_type, aggregate_id, max(version) AS newest
      FROM {schema}.{events} GROUP BY aggregate_type, aggregate_id) AS st
LEFT JOIN {schema}.{snapshots} s USING (aggregate_type, aggregate_id)
