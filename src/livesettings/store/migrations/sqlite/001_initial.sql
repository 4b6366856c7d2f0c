-- livesettings schema version 1 on SQLite.
--
-- Read by livesettings.store.migrations: one statement per entry, each ending with a
-- semicolon at the end of a line. Setup runs a CREATE only for an object that is missing (and
-- reports it), and an ADD COLUMN only when a seed-style user_preferences table lacks it.

CREATE TABLE IF NOT EXISTS livesettings_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS user_preferences (
    id INTEGER PRIMARY KEY,
    user_id TEXT UNIQUE NOT NULL,
    preferences TEXT,
    api_keys TEXT,
    ai_providers TEXT,
    theme TEXT,
    language TEXT,
    created_at TEXT,
    updated_at TEXT,
    revision INTEGER NOT NULL DEFAULT 0,
    leaf_meta TEXT
);

CREATE TABLE IF NOT EXISTS settings_changes (
    user_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    patch TEXT NOT NULL,
    mutation_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    conflicts TEXT NOT NULL,
    inverse TEXT NOT NULL,
    PRIMARY KEY (user_id, revision)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS applied_mutations (
    user_id TEXT NOT NULL,
    mutation_id TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    revision INTEGER NOT NULL,
    conflicts TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, mutation_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    username TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    family_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS session_revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS token_revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS data_keys (
    user_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    blob TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Columns a seed-style user_preferences table may lack.
ALTER TABLE user_preferences ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_preferences ADD COLUMN leaf_meta TEXT;
ALTER TABLE user_preferences ADD COLUMN created_at TEXT;
ALTER TABLE user_preferences ADD COLUMN updated_at TEXT;

CREATE INDEX IF NOT EXISTS applied_mutations_created ON applied_mutations (created_at_ms);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS data_keys_master ON data_keys (master_key_id);
CREATE INDEX IF NOT EXISTS session_revocations_user ON session_revocations (user_id);

-- Only when no unique index on user_id alone exists (a seed table that allowed duplicate
-- rows), and only after the adoption has merged them; a name taken by anything else fails.
CREATE UNIQUE INDEX user_preferences_user_id_key ON user_preferences (user_id);
