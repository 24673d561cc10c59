-- Sets a stream's timer ($1, $2, $3), replacing one of the same name.
INSERT INTO {schema}.{positions}_timers (aggregate_type, aggregate_id, name, timer_id, deadline)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (aggregate_type, aggregate_id, name)
DO UPDATE SET timer_id = EXCLUDED.timer_id, deadline = EXCLUDED.deadline
