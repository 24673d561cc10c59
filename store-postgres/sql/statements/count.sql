-- The start of a count; the filter's conditions follow.
SELECT count(*) FROM {schema}.{events}
