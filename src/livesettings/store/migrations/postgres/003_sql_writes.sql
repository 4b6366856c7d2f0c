-- livesettings schema version 3 on PostgreSQL: writes made in SQL, queued for the server,
-- and the admins of the /admin dashboard.
--
-- An UPDATE, INSERT or DELETE of user_preferences made by anyone but livesettings is turned
-- by the triggers (livesettings.store.pg_triggers, remade by every setup) into one row here:
-- the merge patch it meant, the revision it saw and its transaction's time. A server applies
-- each row through its one write path as a mutation by client 'sql', then deletes it.
--
-- admins: the built-in users with the admin flag (`livesettings user add NAME --admin`,
-- `livesettings user admin NAME --on|--off`). The app role reads and deletes only the row of
-- the user its transaction names (pg_policies); rows are granted and listed through the
-- SECURITY DEFINER functions livesettings_set_admin and livesettings_admin_ids (pg_functions).
-- Expand only: a node of schema 2 ignores these tables.

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

CREATE TABLE IF NOT EXISTS public.admins (
    user_id text PRIMARY KEY CHECK (user_id <> ''),
    granted_at timestamptz NOT NULL
);
