-- A stream's events with versions $3..=$4, in version order.
SELECT {columns} FROM {schema}.{events}
WHERE aggregate_type = $1 AND aggregate_id = $2 AND version BETWEEN $3 AND $4
ORDER BY version
