-- A stream's snapshot, through the primary key ({snapshots}_load).
SELECT version, schema_version, state, created_at
FROM {schema}.{snapshots}_load($1, $2)
