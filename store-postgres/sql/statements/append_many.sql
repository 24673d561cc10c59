-- As append_one.sql, for several events, given as arrays ($4..$12) in order.
INSERT INTO {schema}.{events} ({insert_columns})
SELECT b.event_id, $1, $2, $3 + b.ord, b.event_type, b.event_version, b.topic, b.data,
    b.metadata, b.occurred_at, b.correlation_id, b.causation_id
FROM unnest($4::uuid[], $5::text[], $6::int4[], $7::text[], $8::jsonb[], $9::jsonb[],
    $10::timestamptz[], $11::uuid[], $12::uuid[])
    WITH ORDINALITY AS b(event_id, event_type, event_version, topic, data, metadata, occurred_at,
        correlation_id, causation_id, ord)
WHERE ({schema}.{events}_at(ARRAY[$1::text], ARRAY[$2::text], ARRAY[$3::int8], $13))[1]
ORDER BY b.ord
RETURNING version, global_position, transaction_id
