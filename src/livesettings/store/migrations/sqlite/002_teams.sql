-- livesettings schema version 2 on SQLite: teams and their members (DESIGN §11).
--
-- A team's document lives in user_preferences, settings_changes, applied_mutations and
-- data_keys like a personal one, under the document key 'team:<team_id>'; nothing else
-- changes. Setup creates what is missing, so a version-1 database is upgraded in place.

CREATE TABLE IF NOT EXISTS teams (
    team_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS team_members (
    team_id TEXT NOT NULL REFERENCES teams (team_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    added_at TEXT NOT NULL,
    PRIMARY KEY (team_id, user_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS team_members_user ON team_members (user_id);
