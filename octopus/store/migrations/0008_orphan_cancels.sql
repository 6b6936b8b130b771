-- Version 8: runs of a deleted task that were running on an agent. Kept so
-- their agents are told to stop them even across a server restart; a row
-- goes when the agent reports the run (it is then an unknown run).
CREATE TABLE orphan_cancels (
    run_id     INTEGER PRIMARY KEY,
    client     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX orphan_cancels_client ON orphan_cancels (client);
