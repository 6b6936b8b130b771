"""The dashboard in a real browser: Debian's Chromium driven by Playwright,
against a real server and agent (octopus.harness.Cluster).

Screenshots of the main views are written as a side effect (see SHOTS);
with OCTOPUS_SCREENSHOTS=docs/screenshots they refresh the README's pictures.
"""
import os
import re

import pytest

from octopus.harness import ADMIN_TOKEN, REPO_ROOT, Cluster

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it)",
                allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

# Under .build/ (ignored) so a test run leaves the work tree clean; set
# OCTOPUS_SCREENSHOTS=docs/screenshots to refresh the ones the README shows.
SHOTS = REPO_ROOT / os.environ.get("OCTOPUS_SCREENSHOTS", ".build/screenshots")
AGENT = "dash-agent"
expect.set_options(timeout=10_000)

# The browser logs a failed request as a console error; the tests that make
# the server say 400 or 401 on purpose expect those. Anything else (script
# errors, CSP violations) fails the test.
EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of 40[014]")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dashboard"))
    c.start_server()
    c.start_agent(AGENT)
    api = c.api()
    # Some history for the overview and the lists (and the screenshots).
    for args in (["hello"], [1, 2]):
        c.run_task(api, {"plugin": "echo", "action": "echo", "args": args})
    c.run_task(api, {"plugin": "echo", "action": "fail", "args": ["disk full"]})
    api.call("POST", "/tasks", {"plugin": "system", "action": "info", "owner": "ALL",
                                "type": "Interval", "interval": 600})
    api.call("POST", "/tasks", {"plugin": "shell", "action": "run", "args": ["date"],
                                "type": "Scheduled", "interval": "30 9 * * MON-FRI",
                                "timezone": "Europe/Paris"})
    api.close()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, cluster):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    problems = []
    pg.on("console", lambda m: m.type == "error" and not EXPECTED_CONSOLE.search(m.text)
          and problems.append("console: " + m.text))
    pg.on("pageerror", lambda e: problems.append("pageerror: %s" % e))
    pg.base = cluster.url
    yield pg
    context.close()
    assert problems == []


def sign_in(page, token=ADMIN_TOKEN):
    page.goto(page.base + "/")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def signed_in(page, route=""):
    sign_in(page)
    expect(page.locator("header.top")).to_be_visible()
    if route:
        page.goto(page.base + "/#/" + route)
    return page


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / (name + ".png")))


def test_sign_in_shows_the_overview_and_sign_out_returns(page):
    sign_in(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".card .big.ok")).to_have_text("1")  # one agent online
    expect(page.locator(".counts")).to_contain_text("failed")
    expect(page.locator("table").filter(has_text="Finished")).to_contain_text("disk full")
    expect(page.locator("svg.chart rect.st-success").last).to_have_attribute("height", re.compile(r"^[1-9]"))
    shot(page, "overview")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('octopus.token')") is None


def test_a_wrong_token_is_refused(page):
    sign_in(page, "not-the-token")
    expect(page.locator("#signin-error")).to_have_text("The token was refused.")
    expect(page.locator("header.top")).to_be_hidden()
    # A token refused later (rotated on the server) sends any view back to sign-in.
    page.evaluate("sessionStorage.setItem('octopus.token', 'stale')")
    page.goto(page.base + "/#/agents")
    expect(page.locator("#signin-error")).to_contain_text("The token was refused")


def test_the_agent_list_shows_a_running_agent_online(page):
    signed_in(page, "agents")
    row = page.locator("tbody tr", has_text=AGENT)
    expect(row.locator(".badge")).to_have_text("online")
    expect(row).to_contain_text("127.0.0.1")
    expect(row.locator("time")).to_have_text(re.compile(r"(just now|\d+ s ago)"))
    expect(page.locator(".head")).to_contain_text("1 online, 0 offline")
    shot(page, "agents")


def test_an_anyone_echo_task_made_in_the_form_turns_success_with_its_result(page):
    signed_in(page, "tasks/new")
    expect(page.locator("#plugin option[value=echo]")).to_be_attached()
    page.get_by_label("Plugin").select_option("echo")
    page.get_by_label("Action").select_option("echo")
    page.get_by_label("Arguments (JSON array)").fill('["from the dashboard", 42]')
    page.get_by_label("Keyword arguments (JSON object)").fill('{"k": "v"}')
    page.get_by_label("Runs on").select_option("Anyone")
    shot(page, "new-task")
    page.get_by_role("button", name="Create task").click()
    expect(page).to_have_url(re.compile(r"#/tasks/[0-9a-f]{32}$"))
    expect(page.locator(".head .badge")).to_have_text("success")
    expect(page.locator(".json")).to_contain_text('"from the dashboard"')
    run = page.locator("table.runs tbody tr").first
    expect(run.locator(".badge")).to_have_text("success")
    expect(run).to_contain_text(AGENT)
    run.get_by_role("button", name=re.compile("Output of run")).click()
    expect(page.locator("pre.output")).to_contain_text("— result —")
    shot(page, "task-detail")
    first = page.url
    page.get_by_role("button", name="Run again").click()
    expect(page).not_to_have_url(first)
    expect(page.locator(".head .badge")).to_have_text("success")


def test_invalid_json_in_args_is_refused_in_the_form(page):
    signed_in(page, "tasks/new")
    posts = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    args = page.get_by_label("Arguments (JSON array)")
    args.fill("[1, 2")
    expect(page.locator("#args-error")).to_contain_text("Not valid JSON")
    expect(args).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Keyword arguments (JSON object)").fill("[1]")
    expect(page.locator("#kwargs-error")).to_have_text("Must be a JSON object, like {\"key\": \"value\"}.")
    page.get_by_role("button", name="Create task").click()
    expect(args).to_be_focused()
    assert "#/tasks/new" in page.url and posts == []
    args.fill('["ok"]')
    expect(page.locator("#args-error")).to_be_empty()
    expect(args).not_to_have_attribute("aria-invalid", "true")


def test_a_server_error_is_shown_next_to_the_field_it_names(page):
    signed_in(page, "tasks/new")
    expect(page.locator("#plugin option[value=echo]")).to_be_attached()
    page.get_by_label("Timeout (seconds)").fill("-5")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#timeout-error")).to_contain_text("timeout")
    expect(page.get_by_label("Timeout (seconds)")).to_be_focused()


def test_cancel_then_delete_a_sleep_task_from_its_detail_view(page, cluster):
    api = cluster.api()
    _, task = api.call("POST", "/tasks", {"plugin": "sleep", "action": "sleep", "args": [30]})
    signed_in(page, "tasks/" + task["id"])
    expect(page.locator(".head .badge")).to_have_text("Active")
    expect(page.locator("table.runs .badge")).to_have_text("running")
    page.get_by_role("button", name="Cancel task").click()
    expect(page.locator(".head .badge")).to_have_text("cancelled")
    expect(page.locator("table.runs .badge")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel task")).to_be_hidden()
    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_role("button", name="Keep it")).to_be_focused()
    page.get_by_role("button", name="Delete task").click()
    expect(page).to_have_url(re.compile(r"#/tasks$"))
    assert api.call("GET", "/tasks/" + task["id"])[0] == 404
    api.close()


def test_a_scheduled_task_form_shows_the_next_five_times_of_its_cron(page):
    signed_in(page, "tasks/new")
    page.get_by_label("Type").select_option("Scheduled")
    page.get_by_label("Time zone").fill("UTC")
    cron = page.get_by_label("Cron (minute hour day month weekday)")
    cron.fill("*/5 * * * *")
    times = page.locator("#preview li time")
    expect(times).to_have_count(5)
    first, second = (times.nth(i).get_attribute("datetime") for i in range(2))
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d[05]:00\.000Z$", first) and first < second
    cron.fill("61 * * * *")
    expect(page.locator("#cron-error")).not_to_be_empty()
    expect(cron).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#preview")).to_contain_text("No preview")
    cron.fill("30 9 * * MON-FRI")
    expect(times).to_have_count(5)
    expect(page.locator("#cron-error")).to_be_empty()


def test_tasks_list_filters_searches_pages_and_stays_live_without_losing_focus(page, cluster):
    api = cluster.api()
    for i in range(55):
        assert api.call("POST", "/tasks", {"plugin": "echo", "action": "echo",
                                           "args": ["page-%d" % i]})[0] == 201
    signed_in(page, "tasks")
    expect(page.locator("table.tasks tbody tr")).to_have_count(50)
    expect(page.locator(".pager")).to_contain_text("of ")
    shot(page, "tasks")
    page.get_by_label("Status").select_option("failed")
    expect(page.locator("table.tasks tbody tr")).to_have_count(1)
    expect(page.locator("table.tasks tbody .badge")).to_have_text("failed")
    page.get_by_role("button", name="Clear filters").click()
    search = page.get_by_label("Search")
    search.fill("page-")
    expect(page.locator(".pager")).to_contain_text("1–50 of 55")
    page.get_by_role("button", name="Older →").click()
    expect(page.locator(".pager")).to_contain_text("51–55 of 55")
    assert "offset=50" in page.url
    # Live: a new task shows up by itself while the user's cursor stays in the search box.
    search.fill("live-one")
    expect(page.locator(".note.empty")).to_be_visible()
    search.focus()
    api.call("POST", "/tasks", {"plugin": "echo", "action": "echo", "args": ["live-one"]})
    expect(page.locator("table.tasks tbody tr")).to_have_count(1, timeout=3_000)
    expect(search).to_be_focused()
    expect(search).to_have_value("live-one")
    api.close()


def test_refresh_keeps_what_the_user_typed_in_the_form(page):
    signed_in(page, "tasks/new")
    args = page.get_by_label("Arguments (JSON array)")
    args.fill('["half typed"')
    # Two refresh rounds go by (each reads the agent list for the owner choice).
    for _ in range(2):
        with page.expect_response(lambda r: r.url.endswith("/agents")):
            pass
    expect(args).to_be_focused()
    expect(args).to_have_value('["half typed"')
    expect(page.locator("#owner option[value=%s]" % AGENT)).to_be_attached()


def test_the_page_has_the_security_headers(page):
    for path in ("/", "/static/app.js", "/static/style.css"):
        resp = page.request.get(page.base + path)
        assert resp.status == 200, path
        h = resp.headers
        assert "script-src 'self'" in h["content-security-policy"], path
        assert "frame-ancestors 'none'" in h["content-security-policy"], path
        assert h["x-content-type-options"] == "nosniff", path
        assert h["x-frame-options"] == "DENY", path
    # The page runs under that policy with no violation (the fixture fails on any).
    signed_in(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_narrow_screen_keeps_the_views_usable(page):
    page.set_viewport_size({"width": 380, "height": 800})
    signed_in(page, "tasks")
    expect(page.locator("table.tasks tbody tr").first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 380, "the page scrolls sideways at 380 px: %d" % width
