"""Where the dashboard and the bundled plugins live.

Installed (and inside the zipapp) they sit in the package as ``static`` and
``bundled_plugins``; in a source checkout they are the repository's top-level
``static/`` and ``plugins/``.
"""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(installed_name, repo_name):
    installed = _PACKAGE / installed_name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / repo_name


def static_dir():
    return _find("static", "static")


def bundled_plugins_dir():
    return _find("bundled_plugins", "plugins")
