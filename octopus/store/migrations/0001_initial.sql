-- Octopus schema, version 1.
-- Times are ISO 8601 UTC strings of fixed width ("2026-11-27T10:21:47.123Z"),
-- so text order is time order and SQLite's datetime() reads them.

-- The guide's tasks table, every column kept; created_at added for ordering.
CREATE TABLE tasks (
    id                   TEXT PRIMARY KEY,
    owner                TEXT NOT NULL DEFAULT 'Anyone',  -- ALL / Anyone / an agent's name
    plugin               TEXT NOT NULL,
    action               TEXT NOT NULL,
    args                 TEXT NOT NULL DEFAULT '[]',      -- JSON array
    kwargs               TEXT NOT NULL DEFAULT '{}',      -- JSON object
    type                 TEXT NOT NULL DEFAULT 'Adhoc',   -- Adhoc / Scheduled / Interval
    execution_start_time TEXT,
    execution_end_time   TEXT,
    interval             TEXT,
    status               TEXT NOT NULL DEFAULT 'Created', -- Created / Active / Done / success / failed
    executor             TEXT,                            -- agent running it (Anyone / Specific)
    result               TEXT,                            -- JSON
    updated_at           TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    next_run_at          TEXT             -- when it may next be handed out
);

-- Listing newest first, with or without a filter.
CREATE INDEX tasks_created ON tasks (created_at);
CREATE INDEX tasks_status ON tasks (status, created_at);
CREATE INDEX tasks_owner ON tasks (owner, created_at);
CREATE INDEX tasks_type ON tasks (type, created_at);
CREATE INDEX tasks_executor ON tasks (executor, created_at);
CREATE INDEX tasks_plugin ON tasks (plugin, created_at);
-- Assignment: Created tasks of one owner that are due, earliest first.
CREATE INDEX tasks_pending ON tasks (owner, next_run_at) WHERE status = 'Created';
CREATE INDEX tasks_due ON tasks (next_run_at) WHERE status = 'Created';

-- The guide's executions table: one row per run of a task on one agent.
-- A row is written when the run is handed to its agent (status 'running')
-- and finished when the agent reports.
CREATE TABLE executions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT REFERENCES tasks (id) ON DELETE CASCADE,
    client      TEXT,            -- agent name
    status      TEXT,            -- assigned / running / success / failed
    result      TEXT,            -- JSON
    updated_at  TEXT,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    duration    REAL,            -- seconds the action ran, as measured by the agent
    output      TEXT             -- captured stdout and stderr of the run
);

CREATE INDEX executions_task ON executions (task_id, id);
CREATE INDEX executions_client ON executions (client, status);
-- Runs not finished yet, for counts per agent and per task.
CREATE INDEX executions_open ON executions (status, client) WHERE status IN ('assigned', 'running');
CREATE INDEX executions_updated ON executions (updated_at);

CREATE TABLE agents (
    name           TEXT PRIMARY KEY,
    hostname       TEXT,
    ip             TEXT,
    version        TEXT,
    concurrency    INTEGER,
    first_seen     TEXT NOT NULL,
    last_heartbeat TEXT NOT NULL
);

CREATE INDEX agents_heartbeat ON agents (last_heartbeat);
