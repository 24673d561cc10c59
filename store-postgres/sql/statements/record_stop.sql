-- Records where a projection ($1) stopped by its failure policy: the event ($2..$8), the
-- error ($9), the attempts ($10) and when ($11), replacing an earlier record. A projection
-- without a row gets one at the start of the log. Saving or advancing the checkpoint
-- clears it (save_checkpoint.sql, advance_checkpoint.sql).
INSERT INTO {schema}.{positions}
    (projection_name, last_processed_position, last_processed_transaction, last_processed_at, stopped)
VALUES ($1, 0, 0, now(), jsonb_build_object(
    'event_id', $2::uuid, 'aggregate_type', $3::text, 'aggregate_id', $4::text,
    'version', $5::int8, 'global_position', $6::int8, 'transaction_id', $7::int8,
    'event_type', $8::text, 'error', $9::text, 'attempts', $10::int4, 'failed_at', $11::timestamptz))
ON CONFLICT (projection_name) DO UPDATE SET stopped = EXCLUDED.stopped
