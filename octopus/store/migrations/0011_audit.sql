-- Version 11: the audit log. Who (role and token name) created, changed,
-- cancelled or deleted what, when, and from which address.  Rows are only
-- ever added (and removed by retention); GET /audit reads them newest first.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    role    TEXT NOT NULL,   -- admin, agent
    actor   TEXT NOT NULL,   -- the token's name: admin, agent (shared token) or an agent's name
    address TEXT,            -- the request's remote address
    action  TEXT NOT NULL,   -- e.g. task.create, task.update, task.cancel, task.delete, plugin.upload
    target  TEXT,            -- what it acted on: a task id, a plugin or agent name
    detail  TEXT             -- JSON: a short summary of the change
);
CREATE INDEX audit_action ON audit (action, id);
CREATE INDEX audit_target ON audit (target, id);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_at ON audit (at);
