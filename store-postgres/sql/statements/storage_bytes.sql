-- The bytes the events take, table and indexes.
SELECT pg_total_relation_size(to_regclass('{schema}.{events}'))
