-- A stream's events with versions $3..=$4, in version order, through the stream index
-- ({events}_stream).
SELECT {columns} FROM {schema}.{events}_stream($1, $2, $3 - 1, $4)
ORDER BY version
