-- The append of the command path: one event at a version the caller knows ($3: the
-- stream's version, 0 for a new stream), checked and inserted in one statement on the
-- caller's snapshot. The unique index on (aggregate_type, aggregate_id, version) refuses
-- a concurrent second writer of the same version. Retention never deletes a stream's
-- newest event and locks appends out while it deletes, so the newest stored version is
-- the stream's version. {events}_at checks it through the stream index whatever the
-- statistics, reading only what lies at or after $3 ($13: consult the heads deleted
-- under schema version 2).
INSERT INTO {schema}.{events} ({insert_columns})
SELECT $4, $1, $2, $3 + 1, $5, $6, $7, $8, $9, $10, $11, $12
WHERE ({schema}.{events}_at(ARRAY[$1::text], ARRAY[$2::text], ARRAY[$3::int8], $13))[1]
RETURNING version, global_position, transaction_id
