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
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def could_be_deeper(text, limit):
    """False when ``text`` (JSON, str or bytes) has too few brackets to nest more
    than ``limit`` levels: the common case, told at once."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") > limit
    return text.count(b"[") + text.count(b"{") > limit


def nests_deeper(text, limit=MAX_DEPTH):
    """Whether the JSON ``text`` (valid; str or bytes) nests arrays and objects
    more than ``limit`` levels (``[]`` is one).

    Told from the text at C speed, not by walking the parsed value: the
    strings taken out, then the brackets alone, each pass removing the
    innermost pairs; what is left after ``limit`` passes is deeper.
    """
    if not could_be_deeper(text, limit):
        return False
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets = _PAIR.sub(b"", brackets)
        if not brackets:
            return False
    return True


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
