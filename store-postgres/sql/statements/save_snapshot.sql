-- Saves a stream's snapshot, unless a newer one is stored already.
INSERT INTO {schema}.{snapshots} AS s
    (aggregate_type, aggregate_id, version, schema_version, state, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET
    version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
    state = EXCLUDED.state, created_at = EXCLUDED.created_at
WHERE s.version <= EXCLUDED.version
