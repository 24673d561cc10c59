-- Clears a projection's request once carried out, only if it is still the one made at $2.
UPDATE {schema}.{positions}
SET request = NULL, request_transaction = NULL, request_position = NULL, request_clear = NULL,
    requested_at = NULL
WHERE projection_name = $1 AND requested_at = $2
