"""How deeply JSON nests.

Python's json recurses once per level: a value nested some hundreds of levels
deep parses, then fails to encode (RecursionError) wherever it is sent on.
So JSON coming in may nest at most MAX_DEPTH levels (a request is refused, an
agent's report is mended), and reading a stored value checks READ_DEPTH, a
bound safely below the recursion limit that leaves room for the envelopes a
stored value is sent in (an ALL task's summary holds each run's result).
"""
import json
import re

MAX_DEPTH = 64
READ_DEPTH = 200
# A JSON string, or one of the characters that open, close or separate.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def deeper_than(value, limit=MAX_DEPTH):
    """The path (keys and indexes) to the first array or object of ``value``
    nested more than ``limit`` levels deep (``[]`` is one level), else None."""
    stack = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            children = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        if depth > limit:
            return path
        stack.extend((child, depth + 1, path + (key,)) for key, child in children
                     if isinstance(child, (dict, list)))
    return None


def could_be_deeper(text, limit):
    """False when ``text`` (JSON, str or bytes) has too few brackets to nest more
    than ``limit`` levels: the common case, told without parsing."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") > limit
    return text.count(b"[") + text.count(b"{") > limit


def deep_field(data, limit=MAX_DEPTH):
    """For JSON text too deep to parse: the top-level key (of an object), or
    ``[index].key`` (of an array of objects) under which it nests more than
    ``limit`` levels; None if it cannot tell."""
    depth, commas, keys, last = 0, 0, {}, None
    in_list = data.lstrip()[:1] == b"["
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit + (2 if in_list else 1):
                key = keys.get(2 if in_list else 1)
                if key is None:
                    return None
                return "[%d].%s" % (commas, key) if in_list else key
        elif token in (b"]", b"}"):
            depth -= 1
            keys.pop(depth + 1, None)
        elif token == b",":
            commas += depth == 1
        elif token == b":":
            keys[depth] = last
        else:
            last = _text(token)
    return None


def _text(token):
    try:
        return json.loads(token)[:64]
    except ValueError:
        return None
