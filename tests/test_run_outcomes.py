"""What a run's result says when its plugin fails: to import, or in its action."""
import queue

import pytest

from octopus.agent.runner import Runner

pytestmark = pytest.mark.processes  # real launcher, worker, server or agent processes

ACTIONS = '''
def fail():
    helper()


def helper():
    raise ValueError("bad value")


class Detailed(Exception):
    def __init__(self):
        super().__init__("exit status 3")
        self.result = {"returncode": 3, "stdout": "a\\nb\\n", "error": "not this"}


def detailed():
    raise Detailed()


def opaque():
    class Odd(Exception):
        result = {"returncode": object()}  # not JSON: left out, the error stays
    raise Odd("odd")


def hostile():
    class Hostile(Exception):
        @property
        def result(self):
            raise RuntimeError("no details for you")
    raise Hostile("hostile")
'''


@pytest.fixture
def runner(tmp_path):
    done = queue.Queue()
    r = Runner(str(tmp_path / "tmp"), done.put, output_limit=1000)
    r.start()
    r.done = done
    yield r
    r.close()


def outcome(runner, tmp_path, source, action, name="plug"):
    path = tmp_path / (name + ".py")
    path.write_text(source)
    runner.submit(1, str(path), action, [], {})
    msg = runner.done.get(timeout=30)
    assert msg["status"] == "failed"
    return msg["result"], str(path)


def test_a_plugin_that_raises_as_it_is_imported_fails_as_plugin_import_error(runner, tmp_path):
    result, path = outcome(runner, tmp_path, "import os\nraise KeyError('no config')\n",
                           "anything", name="broken")
    error = result["error"]
    assert error["type"] == "PluginImportError"
    assert error["message"] == "plugin broken failed to import: KeyError: 'no config'"
    # The original error, from the plugin's own line.
    assert error["traceback"].splitlines()[1] == '  File "%s", line 2, in <module>' % path
    assert "octopus/agent" not in error["traceback"]


def test_a_plugin_that_does_not_compile_fails_as_plugin_import_error(runner, tmp_path):
    result, path = outcome(runner, tmp_path, "def ok():\n    return 1\n\ndef bad(:\n",
                           "ok", name="typo")
    error = result["error"]
    assert error["type"] == "PluginImportError"
    assert error["message"].startswith("plugin typo failed to import: SyntaxError: ")
    assert 'File "%s", line 4' % path in error["traceback"]
    assert "octopus/agent" not in error["traceback"]


def test_an_action_that_raises_keeps_its_type_and_its_traceback_starts_in_the_plugin(
        runner, tmp_path):
    result, path = outcome(runner, tmp_path, ACTIONS, "fail")
    error = result["error"]
    assert (error["type"], error["message"]) == ("ValueError", "bad value")
    lines = error["traceback"].splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == '  File "%s", line 3, in fail' % path
    assert "octopus/agent" not in error["traceback"]


def test_an_exceptions_result_details_join_the_failed_runs_result(runner, tmp_path):
    result, _ = outcome(runner, tmp_path, ACTIONS, "detailed")
    assert result["returncode"] == 3 and result["stdout"] == "a\nb\n"
    assert result["error"]["type"] == "Detailed" and result["error"]["message"] == "exit status 3"
    result, _ = outcome(runner, tmp_path, ACTIONS, "opaque")
    assert set(result) == {"error"} and result["error"]["message"] == "odd"
    result, _ = outcome(runner, tmp_path, ACTIONS, "hostile")
    assert set(result) == {"error"} and result["error"]["type"] == "Hostile"
