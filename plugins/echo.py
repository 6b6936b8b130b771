"""Echo plugin: returns its arguments unchanged, or fails on request (for testing)."""


def echo(*args, **kwargs):
    """Return the arguments as {"args": [...], "kwargs": {...}}."""
    return {"args": list(args), "kwargs": dict(kwargs)}


def fail(message):
    """Fail the run by raising RuntimeError(message)."""
    raise RuntimeError(message)
