-- livesettings schema version 3 on SQLite: the admins of the /admin dashboard.
--
-- Version 3 also queues writes made in SQL on PostgreSQL (migrations/postgres/003_sql_writes.sql);
-- the embedded SQLite database is written by its one server process only, so that queue has
-- no table here. The version moves in step so both backends share one numbering.
--
-- admins: the built-in users with the admin flag (`livesettings user add NAME --admin`,
-- `livesettings user admin NAME --on|--off`); removing the account removes its row. Expand
-- only: a node of schema 2 ignores this table.

CREATE TABLE IF NOT EXISTS admins (
    user_id TEXT PRIMARY KEY CHECK (user_id <> ''),
    granted_at TEXT NOT NULL
);
