-- livesettings schema version 3 on PostgreSQL: writes made in SQL, queued for the server.
--
-- An UPDATE, INSERT or DELETE of user_preferences made by anyone but livesettings is turned
-- by the triggers (livesettings.store.pg_triggers, remade by every setup) into one row here:
-- the merge patch it meant, the revision it saw and its transaction's time. A server applies
-- each row through its one write path as a mutation by client 'sql', then deletes it.
-- Expand only: a node of schema 2 ignores this table.

CREATE TABLE IF NOT EXISTS public.sql_writes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text NOT NULL CHECK (user_id <> ''),
    base_revision bigint NOT NULL,
    patch jsonb NOT NULL,
    edited_at bigint NOT NULL,
    written_by text NOT NULL,
    -- The lease of the node applying it (NULL: nobody yet); a lapsed lease is claimed again.
    claimed_until timestamptz
);

CREATE INDEX IF NOT EXISTS sql_writes_user ON public.sql_writes (user_id, id);
