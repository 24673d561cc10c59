-- A category's timers, earliest deadline first, those due before $2 if it is not NULL.
SELECT aggregate_type, aggregate_id, name, timer_id, deadline, version
FROM {schema}.{positions}_timers
WHERE aggregate_type = $1 AND ($2::timestamptz IS NULL OR deadline < $2)
ORDER BY deadline, aggregate_id, name
LIMIT $3
