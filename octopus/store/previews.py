"""JSON columns as listings show them (cut to a preview) and as reads return them.

A listing reads at most PREVIEW characters of ``args``, ``kwargs`` and
``result`` (SQL substr) and their size (octet_length, which SQLite answers
without reading the value): a page of tasks with megabytes of arguments each
never brings them into the server's memory.  A value over PREVIEW bytes is
given as the first PREVIEW bytes of its JSON text (a string) and its name is
listed in the row's ``truncated``.

A stored value nested deeper than nesting.READ_DEPTH (kept by a version that
let one in) is given as its JSON text too, whole, and also named in
``truncated``: encoding it would fail (RecursionError) and every read of the
page with it would be a 500.
"""
import json

from octopus import nesting

PREVIEW = 2048  # bytes of a JSON value a listing shows


def listing_columns(columns, json_columns):
    """SELECT list for a listing: ``columns`` as they are, except each of
    ``json_columns``, read as a preview and a size (see from_listing)."""
    picked = []
    for name in columns:
        if name in json_columns:
            picked.append("substr(%s, 1, %d) AS %s, octet_length(%s) AS %s_bytes"
                          % (name, PREVIEW, name, name, name))
        else:
            picked.append(name)
    return ", ".join(picked)


def from_listing(row, json_columns):
    """Decode a row read with listing_columns; sets ``row["truncated"]``."""
    cut = []
    for name in json_columns:
        text, size = row[name], row.pop(name + "_bytes")
        if text is not None and size > PREVIEW:
            row[name] = text.encode("utf-8")[:PREVIEW].decode("utf-8", "ignore")
            cut.append(name)
        else:
            row[name], as_text = stored_json(text)
            if as_text:
                cut.append(name)
    row["truncated"] = cut
    return row


def from_whole(row, json_columns):
    """Decode a row's JSON columns whole; names in ``row["truncated"]`` (only
    then present) those too deep to give but as their text."""
    cut = []
    for name in json_columns:
        row[name], as_text = stored_json(row[name])
        if as_text:
            cut.append(name)
    if cut:
        row["truncated"] = cut
    return row


def stored_json(text):
    """``(value, False)`` for stored JSON text, or ``(text, True)`` when it nests
    too deep to be encoded again in a reply."""
    if text is None:
        return None, False
    if nesting.nests_deeper(text, nesting.READ_DEPTH):
        return text, True
    return json.loads(text), False
