-- An instance that runs slices of the build $1 says it is alive ($2 instance, $3 label,
-- $4 the slices it holds) and gets every member heard from within $5 seconds whose
-- presence lock is held, itself included; rows not refreshed for a hundred times that go.
-- An instance holds its presence lock, the lease `#member/<instance>` (the advisory lock
-- ($6, hashtext('<schema>.#member/<instance>')), see src/lease.rs), on its store's lease
-- connection: when the instance dies its session ends, and it stops counting at once.
WITH me AS (
    INSERT INTO {schema}.{positions}_members AS m (consumer_name, instance, label, holds, seen_at)
    VALUES ($1, $2, $3, $4, clock_timestamp())
    ON CONFLICT (consumer_name, instance)
    DO UPDATE SET label = EXCLUDED.label, holds = EXCLUDED.holds, seen_at = EXCLUDED.seen_at
    RETURNING instance, label, holds, seen_at
), gone AS (
    DELETE FROM {schema}.{positions}_members
     WHERE consumer_name = $1 AND instance <> $2
       AND seen_at < clock_timestamp() - make_interval(secs => $5 * 100)
), present AS (
    SELECT l.objid FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
       AND l.classid = $6::int8::oid
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT instance, label, holds, seen_at FROM me
UNION ALL
SELECT m.instance, m.label, m.holds, m.seen_at FROM {schema}.{positions}_members m
 WHERE m.consumer_name = $1 AND m.instance <> $2
   AND m.seen_at > clock_timestamp() - make_interval(secs => $5)
   AND ((hashtext('{schema}.#member/' || m.instance::text)::bigint + 4294967296) % 4294967296)::oid
       IN (SELECT objid FROM present)
ORDER BY instance
