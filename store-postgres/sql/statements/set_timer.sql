-- Sets a stream's timer ($1, $2, $3), replacing one of the same name set at the same
-- version ($6) or an older one.
INSERT INTO {schema}.{positions}_timers AS t (aggregate_type, aggregate_id, name, timer_id, deadline, version)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (aggregate_type, aggregate_id, name)
DO UPDATE SET timer_id = EXCLUDED.timer_id, deadline = EXCLUDED.deadline, version = EXCLUDED.version
WHERE t.version <= EXCLUDED.version
