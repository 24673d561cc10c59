-- Deletes a stream's snapshot, through the primary key; whether there was one.
SELECT {schema}.{snapshots}_delete($1, $2)
