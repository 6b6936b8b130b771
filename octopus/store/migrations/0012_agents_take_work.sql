-- Version 12: which agents take work, and agents that said goodbye.
--   online_since: when the agent last came online (first heartbeat, or the
--                 first after CLIENT_TIMEOUT of silence or after it stopped);
--   asked_at:     when it first asked for work (POST /agent/work) since it
--                 came online; NULL: it never asked.  An agent takes work
--                 (gets ALL runs) once asked_at >= online_since;
--   stopped_at:   it said it is stopping: offline until its next heartbeat.
ALTER TABLE agents ADD COLUMN online_since TEXT;
ALTER TABLE agents ADD COLUMN asked_at TEXT;
ALTER TABLE agents ADD COLUMN stopped_at TEXT;
-- An agent that was given work before this version took work.
UPDATE agents SET online_since = first_seen,
    asked_at = CASE WHEN last_assigned IS NOT NULL
                      OR EXISTS (SELECT 1 FROM executions e WHERE e.client = agents.name)
                    THEN last_heartbeat END;
