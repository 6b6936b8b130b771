-- Version 14: a task may ask that what its runs leave running is kept (0 or 1).
ALTER TABLE tasks ADD COLUMN keep_processes INTEGER NOT NULL DEFAULT 0;
