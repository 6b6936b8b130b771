"""Settings: precedence, validation, and the contract names."""
import pytest

from octopus import config as settings
from octopus.cli import parser


def load(table=settings.SERVER_SETTINGS, file_values=None, env=None, flags=None):
    return settings.load(table, file_values, env or {}, flags)


def test_defaults_follow_the_guide():
    server = load()
    assert (server.SERVER_HOST, server.SERVER_PORT, server.CLIENT_TIMEOUT) == ("0.0.0.0", 8000, 30)
    assert server.LOG_FILE == "logs/server.log" and server.LOG_MAX_SIZE == 10 * 1024 * 1024
    assert server.LOG_BACKUP_COUNT == 5 and server.TASK_CLEANUP_INTERVAL == 300
    agent = load(settings.AGENT_SETTINGS)
    assert agent.SERVER_URL == "http://localhost:8000" and agent.HEARTBEAT_INTERVAL == 10
    assert (agent.MAX_RETRY_ATTEMPTS, agent.RETRY_DELAY, agent.TASK_CHECK_INTERVAL) == (3, 2, 5)
    assert agent.LOG_FILE == "logs/client.log" and agent.CONCURRENCY >= 1
    assert server.DATA_DIR == agent.DATA_DIR == "./octopus-data"


def test_precedence_is_default_file_env_flags():
    assert load(file_values={"SERVER_PORT": "1"}).SERVER_PORT == 1
    both = load(file_values={"SERVER_PORT": "1"}, env={"OCTOPUS_SERVER_PORT": "2"})
    assert both.SERVER_PORT == 2
    flags = load(file_values={"SERVER_PORT": "1"}, env={"OCTOPUS_SERVER_PORT": "2"},
                 flags={"SERVER_PORT": "3"})
    assert flags.SERVER_PORT == 3


@pytest.mark.parametrize("name", ["SERVER_HOST", "SERVER_PORT", "DATA_DIR", "DB_FILE",
                                  "ADMIN_TOKEN", "AGENT_TOKEN", "LOG_LEVEL", "CLIENT_TIMEOUT"])
def test_contract_environment_names_reach_the_server(name):
    value = {"SERVER_PORT": "9000", "LOG_LEVEL": "DEBUG", "CLIENT_TIMEOUT": "45"}.get(name, "x")
    config = load(env={"OCTOPUS_" + name: value})
    assert str(getattr(config, name)) == value


@pytest.mark.parametrize("name", ["SERVER_URL", "CLIENT_ID", "AGENT_TOKEN", "DATA_DIR",
                                  "LOG_LEVEL", "HEARTBEAT_INTERVAL"])
def test_contract_environment_names_reach_the_agent(name):
    value = {"SERVER_URL": "http://h:1", "LOG_LEVEL": "ERROR", "HEARTBEAT_INTERVAL": "15"}.get(name, "y")
    config = load(settings.AGENT_SETTINGS, env={"OCTOPUS_" + name: value})
    assert str(getattr(config, name)) == value


def test_contract_flags_exist():
    args = parser().parse_args(["--server", "--agent", "--host", "h", "--port", "1", "--data-dir",
                                "d", "--server-url", "http://s", "--name", "n"])
    assert args.server and args.agent
    assert (args.host, args.port, args.data_dir, args.server_url, args.name) == (
        "h", "1", "d", "http://s", "n")


@pytest.mark.parametrize("env, words", [
    ({"OCTOPUS_SERVER_PORT": "http"}, ["OCTOPUS_SERVER_PORT", "integer from 0 to 65535"]),
    ({"OCTOPUS_CLIENT_TIMEOUT": "0"}, ["OCTOPUS_CLIENT_TIMEOUT", ">= 1"]),
    ({"OCTOPUS_LOG_LEVEL": "LOUD"}, ["OCTOPUS_LOG_LEVEL", "DEBUG, INFO"]),
    ({"OCTOPUS_DEBUG_MODE": "maybe"}, ["OCTOPUS_DEBUG_MODE", "true or false"]),
    ({"OCTOPUS_TASK_ASSIGNMENT_DELAY": "nan"}, ["OCTOPUS_TASK_ASSIGNMENT_DELAY", "number"]),
    ({"OCTOPUS_RETRY_MAX_DELAY": "1e12"}, ["OCTOPUS_RETRY_MAX_DELAY", "from 0 to 1e+07"]),
    ({"OCTOPUS_VACUUM_SCHEDULE": "0 3 * *"}, ["OCTOPUS_VACUUM_SCHEDULE", "5-field cron"]),
])
def test_a_bad_value_names_the_setting_and_what_it_accepts(env, words):
    with pytest.raises(settings.ConfigError) as e:
        load(env=env)
    assert all(w in str(e.value) for w in words)


def test_config_file_format_and_errors(tmp_path):
    path = tmp_path / "octopus.conf"
    path.write_text("# comment\nSERVER_PORT = 8100\nOCTOPUS_LOG_LEVEL='debug'\n\n")
    config = load(file_values=settings.read_file(str(path)))
    assert config.SERVER_PORT == 8100 and config.LOG_LEVEL == "DEBUG"
    path.write_text("SERVER_PORT\n")
    with pytest.raises(settings.ConfigError, match="line 1"):
        settings.read_file(str(path))
    with pytest.raises(settings.ConfigError, match="unknown setting NOPE"):
        load(file_values={"NOPE": "1"})
    with pytest.raises(settings.ConfigError, match="missing.conf"):
        settings.read_file(str(tmp_path / "missing.conf"))


def test_help_lists_token_settings_without_values():
    assert "OCTOPUS_ADMIN_TOKEN" in settings.help_table(settings.SERVER_SETTINGS)


def test_readme_lists_every_setting_as_the_code_has_it():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for table in (settings.SERVER_SETTINGS, settings.AGENT_SETTINGS):
        assert settings.help_table(table) in readme


@pytest.mark.processes
def test_agent_side_imports_nothing_but_the_standard_library():
    """The agent and the CLI run on hosts with nothing but Python: every module
    of octopus.agent (and the CLI's) loads without a third-party package and
    without the server's code (octopus.store, octopus.server)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import pkgutil, sys\n"
            "import octopus.agent, octopus.cli, octopus.ctl\n"
            "for m in pkgutil.iter_modules(octopus.agent.__path__, 'octopus.agent.'):\n"
            "    __import__(m.name)\n"
            "top = {m.split('.')[0] for m in sys.modules}\n"
            "print(sorted(m for m in sys.modules if m.startswith(('octopus.store', "
            "'octopus.server')) or m.split('.')[0] in {'apsw', 'falcon', 'waitress', "
            "'cronsim'}) + sorted(t for t in top - set(sys.stdlib_module_names) "
            "- {'octopus', '__main__'}))")
    # -S: no site-packages at all, so a third-party import fails outright.
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parent.parent), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_warning_that_floods_is_let_through_once_every_few_seconds():
    import logging

    from octopus.logs import AtMostEvery

    now = [100.0]
    keep = AtMostEvery(10.0, clock=lambda: now[0])
    record = logging.LogRecord("waitress.queue", logging.WARNING, "", 0, "Task queue depth is 5",
                               None, None)
    passed = []
    for step in range(100):  # 25 s in quarter seconds
        passed.append(keep.filter(record))
        now[0] += 0.25
    assert [i for i, ok in enumerate(passed) if ok] == [0, 40, 80]
