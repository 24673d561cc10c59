-- Forgets a recorded failure.
DELETE FROM {schema}.{failures} WHERE projection_name = $1 AND event_id = $2
