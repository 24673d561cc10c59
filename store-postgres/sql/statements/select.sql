-- The start of a query; the filter's conditions follow.
SELECT {columns} FROM {schema}.{events}
