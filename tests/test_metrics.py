"""GET /metrics: Prometheus text, fed by real requests and runs."""
import re

from test_api import AGENT_TOKEN, assert_error, create, heartbeat, report, work

LINE = re.compile(r'^(#.*|[a-z_]+(\{[^}]*\})? -?[0-9.e+inf]+)$', re.I)


def metrics(api, token=None):
    r = api.call("GET", "/metrics", **({} if token is None else {"token": token}))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return r.text


def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def test_metrics_count_tasks_runs_agents_and_requests(api):
    heartbeat(api, "a")
    for outcome in ("success", "failed", "success"):
        create(api)
        [run] = work(api, "a")
        report(api, "a", run["id"], status=outcome)
    create(api, owner="nobody")
    text = metrics(api)
    assert all(LINE.match(line) for line in text.splitlines()), text
    assert value(text, 'octopus_tasks{status="success"}') == 2
    assert value(text, 'octopus_tasks{status="Created"}') == 1
    assert value(text, 'octopus_runs_finished_total{status="success"}') == 2
    assert value(text, 'octopus_runs_finished_total{status="failed"}') == 1
    assert value(text, 'octopus_agents{state="online"}') == 1
    assert value(text, "octopus_dispatch_latency_seconds_count") == 3
    assert value(text, 'octopus_http_requests_total{route="/tasks",method="POST",code="201"}') == 4
    assert value(text, 'octopus_http_request_duration_seconds_count{route="/agent/results"}') == 3
    assert value(text, "octopus_database_bytes") > 0
    # ids never become labels: one series for every task read
    task = create(api)
    api.call("GET", "/tasks/" + task["id"])
    assert 'route="/tasks/{task_id}"' in metrics(api)


def test_metrics_take_the_admin_or_the_metrics_token_only(api, tmp_path):
    from conftest import AppClient

    assert_error(api.call("GET", "/metrics", token=AGENT_TOKEN), 403)
    assert_error(api.call("GET", "/metrics", token=None), 401)
    scraper = AppClient(tmp_path, api.store, METRICS_TOKEN="scrape-me")
    metrics(scraper, token="scrape-me")
    assert_error(scraper.call("GET", "/tasks", token="scrape-me"), 403)
