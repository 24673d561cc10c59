-- A stream's version: its newest stored event's, or ($3) a head that retention deleted
-- under schema version 2. {events}_head finds it through the stream index.
SELECT {schema}.{events}_head($1, $2, $3)
