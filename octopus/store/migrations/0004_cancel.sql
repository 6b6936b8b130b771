-- Version 4: when an operator asked to stop a run (it is told on its agent's next ask).
ALTER TABLE executions ADD COLUMN cancel_requested TEXT;
