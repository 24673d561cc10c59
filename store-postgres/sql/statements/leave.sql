-- An instance stops running slices of the build $1.
DELETE FROM {schema}.{positions}_members WHERE consumer_name = $1 AND instance = $2
