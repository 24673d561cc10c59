-- Enters a projection's batch fence and checks its checkpoint.
SELECT {schema}.{positions}_fence($1, $2, $3)
