-- factum event store schema, version 8: a projection stopped by its failure policy says
-- so in its row, for operators (`factum status`).
--
-- `stopped` holds the event it stopped at and why, as a JSON object with the fields of a
-- recorded failure (event_id, aggregate_type, aggregate_id, version, global_position,
-- transaction_id, event_type, error, attempts, failed_at); NULL while the projection
-- runs. Saving or advancing the checkpoint clears it: the projection got past the event,
-- or was reset.
ALTER TABLE {schema}.{positions} ADD COLUMN stopped JSONB;
