-- Version 5: recurring tasks, retries, runs that wait, fencing.

-- Scheduled tasks read their cron in this IANA zone (NULL: UTC).
ALTER TABLE tasks ADD COLUMN timezone TEXT;
-- A run due while the previous one on the same agent still goes: skip, queue or parallel.
ALTER TABLE tasks ADD COLUMN overlap TEXT NOT NULL DEFAULT 'skip';
-- Slots missed while the server was down: once, all or none.
ALTER TABLE tasks ADD COLUMN catch_up TEXT NOT NULL DEFAULT 'once';
ALTER TABLE tasks ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN retry_delay REAL NOT NULL DEFAULT 10;
ALTER TABLE tasks ADD COLUMN retry_backoff REAL NOT NULL DEFAULT 2;
-- When an operator cancelled it: a recurring task then ends as cancelled.
ALTER TABLE tasks ADD COLUMN cancelled_at TEXT;

-- Each try of a run is its own row: attempt 1, then its retries.
ALTER TABLE executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
-- When the run was due: a recurring task's slot, or when a retry may start.
ALTER TABLE executions ADD COLUMN due_at TEXT;
-- Handed to the agent with the run and checked on its report, so a run
-- settled as lost and given to another try cannot be reported twice.
ALTER TABLE executions ADD COLUMN lease TEXT;

-- Runs waiting (for their time, their agent, or the run before them), by
-- agent (NULL: any agent), earliest due first.
CREATE INDEX executions_queued ON executions (client, due_at) WHERE status = 'queued';
CREATE INDEX executions_queued_due ON executions (due_at) WHERE status = 'queued';
-- A task's unfinished runs (overlap checks, settling), without reading its history.
CREATE INDEX executions_pending ON executions (task_id, client)
    WHERE status IN ('queued', 'assigned', 'running');
-- Recurring tasks by their next slot: the scheduler reads only due ones.
CREATE INDEX tasks_recurring ON tasks (next_run_at)
    WHERE status IN ('Created', 'Active') AND type != 'Adhoc';
