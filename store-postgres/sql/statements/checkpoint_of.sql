-- The transaction of the event stored at position $1 (its checkpoint, with the position).
SELECT transaction_id FROM {schema}.{events} WHERE global_position = $1
