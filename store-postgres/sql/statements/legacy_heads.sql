-- Whether the head table still holds heads deleted under schema version 2.
SELECT EXISTS (SELECT 1 FROM {schema}.{streams})
