-- A projection's builds, by version and build number.
SELECT projection_name, version, build, state, location, created_at, live_at, retired_at, slices
  FROM {schema}.{positions}_builds
 WHERE projection_name = $1
 ORDER BY version, build
