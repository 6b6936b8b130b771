-- Version 13: the search index in a form the stock sqlite3 of Debian 12
-- (3.40), Ubuntu 22.04 (3.37) and RHEL 9 (3.34) can use, so the operator's
-- own statements (DELETE FROM tasks ... through the delete trigger, REINDEX,
-- VACUUM) run on the database.  0009 made task_search contentless with
-- contentless_delete = 1, an option of SQLite 3.43 that older versions refuse
-- ("unrecognized option").
--
-- Now the index keeps its own copy of the lowered text (an ordinary FTS5
-- table), so a row is deleted by its rowid alone in every version: nothing
-- depends on the tool computing lower() as the server did.  The trigram
-- tokenizer and its case_sensitive option are SQLite 3.34.  The triggers of
-- 0009 stay as they are: they name the table, which keeps its name.
DROP TABLE task_search;

CREATE VIRTUAL TABLE task_search USING fts5(
    id, plugin, action, owner, executor, args, kwargs,
    tokenize = 'trigram case_sensitive 1');

INSERT INTO task_search (rowid, id, plugin, action, owner, executor, args, kwargs)
    SELECT k.key, lower(t.id), lower(t.plugin), lower(t.action), lower(t.owner),
           lower(t.executor), lower(t.args), lower(t.kwargs)
    FROM task_search_keys k JOIN tasks t ON t.id = k.task_id;
