-- livesettings schema version 2 on PostgreSQL: teams and their members (DESIGN §11).
--
-- A team's document lives in user_preferences, settings_changes, applied_mutations and
-- data_keys like a personal one, under the document key 'team:<team_id>'. Setup creates what
-- is missing, so a version-1 database is upgraded in place; row-level security on both
-- tables, and the membership rule of the document tables' policies, are pg_policies'.

CREATE TABLE IF NOT EXISTS public.teams (
    team_id text PRIMARY KEY CHECK (team_id <> ''),
    name text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS public.team_members (
    team_id text NOT NULL REFERENCES public.teams (team_id) ON DELETE CASCADE,
    user_id text NOT NULL CHECK (user_id <> ''),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    added_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

CREATE INDEX IF NOT EXISTS team_members_user ON public.team_members (user_id);
