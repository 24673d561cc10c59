-- An instance that runs slices of the build $1 says it is alive ($2 instance, $3 label,
-- $4 the slices it holds) and gets every member heard from within $5 seconds, itself
-- included; rows not refreshed for a hundred times that go.
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
)
SELECT instance, label, holds, seen_at FROM me
UNION ALL
SELECT instance, label, holds, seen_at FROM {schema}.{positions}_members
 WHERE consumer_name = $1 AND instance <> $2
   AND seen_at > clock_timestamp() - make_interval(secs => $5)
ORDER BY instance
