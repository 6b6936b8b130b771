-- Version 3: a task may limit how long each of its runs takes (seconds).
ALTER TABLE tasks ADD COLUMN timeout REAL;
