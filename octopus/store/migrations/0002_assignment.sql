-- Version 2: when an agent was last given Anyone work, so that among equally
-- busy agents the one idle longest is chosen next.
ALTER TABLE agents ADD COLUMN last_assigned TEXT;

-- GET /executions?status=... newest first, without scanning the table.
CREATE INDEX executions_status ON executions (status, id);
