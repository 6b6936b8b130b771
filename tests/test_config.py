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


# -- OCTOPUS_* variables that are no setting --------------------------------------


def test_an_unknown_octopus_variable_is_named_with_the_closest_setting():
    env = {"OCTOPUS_CLIENT_TIMOUT": "5", "OCTOPUS_HEARTBEAT_INTERVAL": "3",  # an agent's
           "OCTOPUS_SERVER_PORT": "1", "OCTOPUS_CONFIG": "x.conf", "OCTOPUS_SCREENSHOTS": "d",
           "OCTOPUS_ORIGINAL_PYTHONPATH": "", "OCTOPUS_TEST_LEAK": "1", "PATH": "/bin",
           "OCTOPUS_ZZZ": "1", "octopus_lower": "1"}
    line = settings.unknown_environment(env)
    assert "\n" not in line
    assert line == ("ignoring environment variables: no such setting: OCTOPUS_CLIENT_TIMOUT "
                    "(did you mean CLIENT_TIMEOUT?); OCTOPUS_ZZZ")
    assert settings.unknown_environment({"OCTOPUS_LOG_LEVL": "DEBUG"}) == (
        "ignoring an environment variable: no such setting: OCTOPUS_LOG_LEVL "
        "(did you mean LOG_LEVEL?)")
    assert settings.unknown_environment({"OCTOPUS_CLIENT_ID": "a", "HOME": "/"}) is None


def test_every_octopus_variable_the_code_reads_is_a_setting_or_known():
    """Variables read by name (not through a Setting) must not be warned about."""
    import re

    from octopus.harness import REPO_ROOT

    used = set()
    for folder in ("octopus", "tests", "scripts"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            used.update(re.findall(r"OCTOPUS_([A-Z0-9_]+)", path.read_text(errors="replace")))
    unknown = {n for n in used if n not in settings._ALL_NAMES} - settings.NOT_SETTINGS
    # names in these tests themselves, spelt wrong on purpose
    assert unknown <= {"CLIENT_TIMOUT", "ZZZ", "LOG_LEVL", "HEARTBEAT_INTERVALL", "SERVR_URL",
                       "THREADZ"}, unknown


@pytest.mark.processes
def test_the_server_agent_and_cli_warn_of_a_misspelt_variable_once(tmp_path):
    import subprocess

    from octopus.harness import Cluster

    with Cluster(tmp_path, env={"OCTOPUS_THREADZ": "4"}) as cluster:
        cluster.start_server()
        cluster.start_agent("speller", env={"OCTOPUS_HEARTBEAT_INTERVALL": "2"})
        server_log = (tmp_path / "server" / "logs" / "server.log").read_text()
        [line] = [x for x in server_log.splitlines() if "no such setting" in x]
        assert "WARNING" in line and "OCTOPUS_THREADZ (did you mean THREADS?)" in line
        agent_log = (tmp_path / "agent-speller" / "logs" / "client.log").read_text()
        [line] = [x for x in agent_log.splitlines() if "no such setting" in x]
        assert "OCTOPUS_HEARTBEAT_INTERVALL (did you mean HEARTBEAT_INTERVAL?)" in line
        assert "OCTOPUS_THREADZ" in line  # the agent sees the server's misspelling too
        done = subprocess.run(cluster.command + ["tasks", "list", "--server-url", cluster.url],
                              capture_output=True, text=True, timeout=60,
                              env=dict(cluster._env, OCTOPUS_SERVR_URL="x"))
        assert done.returncode == 0, done.stderr
        warnings = [x for x in done.stderr.splitlines() if "no such setting" in x]
        assert warnings == ["octopus: warning: ignoring environment variables: no such setting: "
                            "OCTOPUS_SERVR_URL (did you mean SERVER_URL?); OCTOPUS_THREADZ "
                            "(did you mean THREADS?)"]
