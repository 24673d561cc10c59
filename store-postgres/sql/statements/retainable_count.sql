-- How many events retention would delete now, by its own rules ({events}_retainable):
-- $1 the cutoff, $2 guarded (safe mode), $3 the consumers, $4 keep what no snapshot covers.
SELECT count(*) FROM {schema}.{events}_retainable($1, $2, $3, $4)
