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
    """Send ``loggers`` to stderr and, if ``filename``, to a rotating file."""
    level = "DEBUG" if getattr(config, "DEBUG_MODE", False) else config.LOG_LEVEL
    handlers = [logging.StreamHandler(sys.stderr)]
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
