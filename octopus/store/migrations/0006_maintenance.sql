-- Version 6: automated maintenance (retention, checkpoint, VACUUM, REINDEX,
-- PRAGMA optimize).  Needs nothing from version 5 (recurring tasks).

-- One row per maintenance run, for GET /maintenance; trimmed per kind.
CREATE TABLE maintenance_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,      -- retention / checkpoint / vacuum / reindex / optimize
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration    REAL NOT NULL,      -- seconds
    detail      TEXT NOT NULL DEFAULT '{}',  -- JSON: rows deleted, sizes, pages
    error       TEXT                -- NULL when the run succeeded
);

CREATE INDEX maintenance_runs_kind ON maintenance_runs (kind, id);

-- Retention: finished runs by the time they finished, so each batch reads
-- only rows it deletes (the expression must match the query's exactly).
CREATE INDEX executions_finished ON executions (coalesce(finished_at, updated_at))
    WHERE status NOT IN ('queued', 'assigned', 'running');
-- Retention: finished tasks by their last change.
CREATE INDEX tasks_finished ON tasks (updated_at)
    WHERE status IN ('Done', 'success', 'failed', 'completed', 'cancelled');
