"""A smoke test of the dashboard in Firefox: Debian's firefox-esr driven over
WebDriver BiDi by tests/bidi.py (Playwright's Firefox is its own build, and
geckodriver is not packaged), against a real server and agent.  The thorough
browser tests are in test_dashboard.py (Chromium); this one checks that the
main paths work in Firefox too, with no console errors, uncaught exceptions
or CSP violations.

Screenshots go to .build/screenshots/firefox-*.png as a side effect.
"""
import json
import os

import pytest

from octopus.harness import ADMIN_TOKEN, REPO_ROOT, Cluster

FIREFOX = "/usr/bin/firefox-esr"
if not os.path.exists(FIREFOX):
    pytest.skip("Debian's firefox-esr is not installed at %s (.ci/run installs it)" % FIREFOX,
                allow_module_level=True)

from bidi import Firefox  # noqa: E402

pytestmark = pytest.mark.processes  # real server, agent or script processes

SHOTS = REPO_ROOT / ".build" / "screenshots"
AGENT = "ff-agent"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("dashboard-firefox")) as c:
        c.start_server()
        c.start_agent(AGENT)
        api = c.api()
        c.run_task(api, {"plugin": "echo", "action": "echo", "args": ["hello"]})
        c.run_task(api, {"plugin": "echo", "action": "fail", "args": ["disk full"]})
        api.close()
        yield c


@pytest.fixture(scope="module")
def firefox():
    ff = Firefox(FIREFOX)
    yield ff
    ff.close()


@pytest.fixture
def ff(firefox, cluster):
    """A fresh tab (so a fresh sessionStorage: signed out) per test; fails the
    test on any console error, page error or CSP violation in it."""
    blank = firefox.new_tab()
    firefox.entries.clear()
    firefox.base = cluster.url
    yield firefox
    problems = firefox.errors()
    firefox.send("browsingContext.close", {"context": firefox.context})
    firefox.context = blank
    assert not problems, "\n".join(problems)


def text(ff, selector):
    return ff.eval("document.querySelector(%s)?.textContent.trim()" % json.dumps(selector))


def wait_text(ff, selector, pattern, timeout=10.0):
    """Waits until the element's text matches the regular expression."""
    js = "(e => e && new RegExp(%s).test(e.textContent))(document.querySelector(%s))" % (
        json.dumps(pattern), json.dumps(selector))
    try:
        ff.wait_for(js, timeout)
    except TimeoutError:
        raise AssertionError("%s: %r does not match %r" % (selector, text(ff, selector), pattern)) from None


def signed_in(ff, route=""):
    ff.navigate(ff.base + "/")
    ff.type("#token", ADMIN_TOKEN)
    ff.click("#signin-form button[type=submit]")
    ff.wait_for("!document.querySelector('header.top').hidden && document.querySelector('#signin').hidden",
                what="the signed-in dashboard")
    if route:
        ff.navigate(ff.base + "/#/" + route)
    return ff


def shot(ff, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    ff.eval("window.scrollTo(0, 0)")
    ff.screenshot(str(SHOTS / ("firefox-" + name + ".png")))


def test_sign_in_shows_the_overview(ff):
    signed_in(ff)
    wait_text(ff, "h1", "^Overview$")
    wait_text(ff, ".card .big.ok", "^1$")  # one agent online
    # Tasks by status: one succeeded, one failed.
    wait_text(ff, ".counts", "success")
    wait_text(ff, ".counts", "failed")
    wait_text(ff, "table", "disk full")
    # The chart is an SVG with a bar for the successful run.
    ff.wait_for("[...document.querySelectorAll('svg.chart rect.st-success')].some("
                "(r) => parseFloat(r.getAttribute('height')) > 0)", what="a success bar in the chart")
    assert ff.eval("document.querySelector('svg.chart').getBoundingClientRect().width") > 100
    assert ff.eval("document.title") == "Overview · Octopus"
    shot(ff, "overview")


def test_the_agent_list_shows_the_agent_online(ff):
    signed_in(ff, "agents")
    wait_text(ff, "h1", "^Agents$")
    ff.wait_for("[...document.querySelectorAll('tbody tr')].some((tr) => tr.textContent.includes(%s)"
                " && tr.querySelector('.badge')?.textContent === 'online')" % json.dumps(AGENT),
                what=AGENT + " online")
    wait_text(ff, ".head", "1 online, 0 offline")
    shot(ff, "agents")


def test_an_echo_task_made_in_the_form_turns_success(ff):
    signed_in(ff, "tasks/new")
    ff.wait_for("document.querySelector('#plugin option[value=echo]')", what="the echo plugin")
    ff.select("#plugin", "echo")
    ff.wait_for("document.querySelector('#action option[value=echo]')", what="the echo action")
    ff.select("#action", "echo")
    ff.type("#args", '["from firefox", 42]')
    ff.type("#kwargs", '{"k": "v"}')
    ff.select("#owner", "Anyone")
    shot(ff, "new-task")
    ff.click("#new-task button[type=submit]")
    ff.wait_for("/^#\\/tasks\\/[0-9a-f]{32}$/.test(location.hash)", what="the new task's page")
    wait_text(ff, ".head .badge", "^success$", timeout=20)
    wait_text(ff, ".json", '"from firefox"')
    ff.wait_for("(tr => tr && tr.querySelector('.badge')?.textContent === 'success' && tr.textContent.includes(%s))"
                "(document.querySelector('table.runs tbody tr'))" % json.dumps(AGENT), what="a successful run")
    assert ff.eval("document.title") == "echo.echo · Octopus"
    ff.click("table.runs tbody tr button[aria-label^='Output of run']")
    wait_text(ff, ".output-row .run-result", '"from firefox"')
    shot(ff, "task-detail")

