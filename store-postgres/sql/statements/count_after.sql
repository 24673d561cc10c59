-- A consumer's lag: the events after ($1 transaction, $2 position), of the aggregate types
-- $3 (all when empty). Capped, so that measuring a huge lag stays cheap.
SELECT count(*) FROM (
    SELECT 1 FROM {schema}.{events}
    WHERE (transaction_id, global_position) > ($1, $2)
      AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3))
    LIMIT 10000000
) AS t
