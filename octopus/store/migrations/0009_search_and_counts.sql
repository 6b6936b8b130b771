-- Version 9: GET /tasks?q= through an FTS5 trigram index, and tasks counted
-- by status in a small table (GET /health, /stats, /metrics), both kept by
-- triggers so every writer of tasks keeps them right.

-- The search index is keyed on task_search_keys.key, not on tasks' rowid:
-- tasks has no INTEGER PRIMARY KEY, so VACUUM may renumber its rowids, which
-- would point an index keyed on them at other tasks.  An INTEGER PRIMARY KEY
-- is kept by VACUUM.
CREATE TABLE task_search_keys (
    key     INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE
);

-- The searched columns (tasks.SEARCHED), each its own column so a match lies
-- within one of them, as with LIKE.  Contentless: the text stays in tasks only.
-- Values go in through lower(), which folds ASCII only, and the tokenizer
-- keeps case: a phrase of the ASCII-lowered search text then matches exactly
-- where LIKE (case-insensitive for ASCII only) did.
CREATE VIRTUAL TABLE task_search USING fts5(
    id, plugin, action, owner, executor, args, kwargs,
    content = '', contentless_delete = 1, tokenize = 'trigram case_sensitive 1');

INSERT INTO task_search_keys (task_id) SELECT id FROM tasks ORDER BY created_at, rowid;
INSERT INTO task_search (rowid, id, plugin, action, owner, executor, args, kwargs)
    SELECT k.key, lower(t.id), lower(t.plugin), lower(t.action), lower(t.owner),
           lower(t.executor), lower(t.args), lower(t.kwargs)
    FROM task_search_keys k JOIN tasks t ON t.id = k.task_id;

CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_search_keys (task_id) VALUES (new.id);
    INSERT INTO task_search (rowid, id, plugin, action, owner, executor, args, kwargs)
        VALUES ((SELECT key FROM task_search_keys WHERE task_id = new.id), lower(new.id),
                lower(new.plugin), lower(new.action), lower(new.owner), lower(new.executor),
                lower(new.args), lower(new.kwargs));
END;

CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN
    DELETE FROM task_search WHERE rowid = (SELECT key FROM task_search_keys WHERE task_id = old.id);
    DELETE FROM task_search_keys WHERE task_id = old.id;
END;

-- Only when a searched value changed: status changes (the most common
-- update) name none of these columns, assignment names executor.
CREATE TRIGGER tasks_search_update
AFTER UPDATE OF id, plugin, action, owner, executor, args, kwargs ON tasks
WHEN old.id IS NOT new.id OR old.plugin IS NOT new.plugin OR old.action IS NOT new.action
    OR old.owner IS NOT new.owner OR old.executor IS NOT new.executor
    OR old.args IS NOT new.args OR old.kwargs IS NOT new.kwargs
BEGIN
    UPDATE task_search_keys SET task_id = new.id WHERE task_id = old.id;
    DELETE FROM task_search WHERE rowid = (SELECT key FROM task_search_keys WHERE task_id = new.id);
    INSERT INTO task_search (rowid, id, plugin, action, owner, executor, args, kwargs)
        VALUES ((SELECT key FROM task_search_keys WHERE task_id = new.id), lower(new.id),
                lower(new.plugin), lower(new.action), lower(new.owner), lower(new.executor),
                lower(new.args), lower(new.kwargs));
END;

-- Tasks by status; a status with no task keeps a row with n = 0.
CREATE TABLE task_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO task_counts (status, n) SELECT status, count(*) FROM tasks GROUP BY status;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts (status, n) VALUES (new.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = old.status;
END;

CREATE TRIGGER tasks_count_update AFTER UPDATE OF status ON tasks
WHEN old.status IS NOT new.status BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = old.status;
    INSERT INTO task_counts (status, n) VALUES (new.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
