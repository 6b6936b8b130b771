"""Logging: one logger per component, a rotating file per role.

The server writes ``octopus.server``/``octopus.store``/... to its file and the
agent ``octopus.agent`` to its own, so ``--server --agent`` in one process
still gives the guide's two logs (server.log and client.log).
"""
import logging
import logging.handlers
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(config, loggers, filename):
    """Send ``loggers`` to a rotating file (if ``filename``) and to stderr.

    With a log file, stderr gets only warnings unless it is a terminal: under
    a service manager the file has the full log, and every line written twice
    would cost the server time on each task.
    """
    level = "DEBUG" if getattr(config, "DEBUG_MODE", False) else config.LOG_LEVEL
    console = logging.StreamHandler(sys.stderr)
    if filename and not _is_terminal(sys.stderr):
        console.setLevel(logging.WARNING)
    handlers = [console]
    if filename:
        path = config.path(filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            path, maxBytes=config.LOG_MAX_SIZE, backupCount=config.LOG_BACKUP_COUNT,
            encoding="utf-8"))
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in loggers:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        for handler in handlers:
            logger.addHandler(handler)


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
