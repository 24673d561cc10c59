-- Whether a committed event of category $4 (of any when NULL) lies after the checkpoint
-- ($1 transaction, $2 position) in log order, at or below position $3: through the log
-- index, or the category's, from the checkpoint on. Also true while no event at or past
-- position $3 is stored: the log has not reached it yet.
SELECT EXISTS (
    SELECT 1 FROM {schema}.{events}
    WHERE (transaction_id, global_position) > ($1, $2)
      AND global_position <= $3
      AND ($4::text IS NULL OR aggregate_type = $4::text)
) OR NOT EXISTS (SELECT 1 FROM {schema}.{events} WHERE global_position >= $3)
