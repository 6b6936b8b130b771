-- Version 7: a retry names the run it tries again, so a late report of that
-- run withdraws only its own retry.
ALTER TABLE executions ADD COLUMN retry_of INTEGER;
CREATE INDEX executions_retry ON executions (retry_of) WHERE retry_of IS NOT NULL;
