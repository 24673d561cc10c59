-- Registers a build.
INSERT INTO {schema}.{positions}_builds (projection_name, version, build, consumer_name, state, location, live_at, slices)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 = 'live' THEN now() END, $7)
RETURNING projection_name, version, build, state, location, created_at, live_at, retired_at, slices
