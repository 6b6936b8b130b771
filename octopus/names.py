"""Plugin and action names, shared by the server and the stdlib-only agent
(kept apart from octopus.plugins so agents do not import what uploads need)."""
import keyword


def valid_name(name):
    """Plugin and action names are identifiers without a leading underscore."""
    return (isinstance(name, str) and 0 < len(name) <= 64 and name.isidentifier()
            and name.isascii() and not name.startswith("_") and not keyword.iskeyword(name))
