-- Records an operator's request for a projection ($1), replacing one not yet carried out:
-- $2 'reset' or 'retry'; for a reset, $3/$4 the checkpoint to go on from and $5 whether
-- to clear the read model. requested_at identifies the request; it is made later than the
-- one it replaces, so that completing that one cannot remove this one. A projection
-- without a row gets one at the start of the log.
INSERT INTO {schema}.{positions} AS p
    (projection_name, last_processed_position, last_processed_transaction, last_processed_at,
     request, request_transaction, request_position, request_clear, requested_at)
VALUES ($1, 0, 0, now(), $2, $3, $4, $5, clock_timestamp())
ON CONFLICT (projection_name) DO UPDATE SET
    request = EXCLUDED.request,
    request_transaction = EXCLUDED.request_transaction,
    request_position = EXCLUDED.request_position,
    request_clear = EXCLUDED.request_clear,
    requested_at = greatest(EXCLUDED.requested_at, p.requested_at + interval '1 microsecond')
RETURNING request, request_transaction, request_position, request_clear, requested_at
