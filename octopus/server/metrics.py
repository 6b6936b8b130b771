"""``GET /metrics`` in the Prometheus text format, and what feeds it.

Counters and histograms live in this process (they restart at zero with it,
which Prometheus expects); gauges are read from the store when scraped.
"""
import bisect
import threading
import time

from octopus.server.auth import METRICS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Anything else is counted as "other": a label must not take a client's invention.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
DISPATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300)


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bucket
        self.total = 0.0

    def observe(self, value):
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name, labels):
        out, running = [], 0
        for bound, count in zip(self.buckets + (float("inf"),), self.counts):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append("%s_bucket{%s} %d" % (name, _labels(dict(labels, le=le)), running))
        tail = "{%s}" % _labels(labels) if labels else ""
        out.append("%s_sum%s %r" % (name, tail, self.total))
        out.append("%s_count%s %d" % (name, tail, running))
        return out


class Metrics:
    """What the server counts as it goes; one lock, held for microseconds."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests = {}   # (route, method, code) -> count
        self._latency = {}    # route -> Histogram
        self._dispatch = Histogram(DISPATCH_BUCKETS)

    def request(self, route, method, code, seconds):
        with self._lock:
            key = (route, method, code)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get(route)
            if hist is None:
                hist = self._latency[route] = Histogram(HTTP_BUCKETS)
            hist.observe(seconds)

    def dispatched(self, seconds):
        """A run reached its agent ``seconds`` after it was due."""
        with self._lock:
            self._dispatch.observe(max(0.0, seconds))

    def lines(self):
        with self._lock:
            out = _family("octopus_http_requests_total", "counter", "HTTP requests served.")
            out += ["octopus_http_requests_total{%s} %d" % (_labels(
                {"route": r, "method": m, "code": c}), n)
                for (r, m, c), n in sorted(self._requests.items())]
            out += _family("octopus_http_request_duration_seconds", "histogram",
                           "Time to answer an HTTP request (long-polls included).")
            for route in sorted(self._latency):
                out += self._latency[route].lines("octopus_http_request_duration_seconds",
                                                  {"route": route})
            out += _family("octopus_dispatch_latency_seconds", "histogram",
                           "From when a run was due to when its agent took it.")
            out += self._dispatch.lines("octopus_dispatch_latency_seconds", {})
        return out


class MetricsMiddleware:
    """Counts every request by its route template, so ids do not explode labels."""

    def __init__(self, metrics, clock=time.perf_counter):
        self._metrics = metrics
        self._clock = clock

    def process_request(self, req, resp):
        req.context.started = self._clock()

    def process_response(self, req, resp, resource, req_succeeded):
        started = getattr(req.context, "started", None)
        if started is None:
            return
        route = req.uri_template or ("/static" if req.path.startswith("/static/") else "other")
        method = req.method if req.method in METHODS else "other"
        self._metrics.request(route, method, resp.status[:3] if isinstance(resp.status, str)
                              else str(resp.status), self._clock() - started)


class MetricsResource:
    auth = METRICS

    def __init__(self, metrics, store, dispatcher):
        self._metrics = metrics
        self._store = store
        self._dispatcher = dispatcher

    def on_get(self, req, resp):
        tasks, running = self._store.counts()
        agents = self._store.agent_counts()
        out = _family("octopus_tasks", "gauge", "Tasks by status.")
        out += ["octopus_tasks{%s} %d" % (_labels({"status": s}), n) for s, n in sorted(tasks.items())]
        out += _family("octopus_runs_open", "gauge", "Runs assigned to or running on agents.")
        out += ["octopus_runs_open %d" % running]
        out += _family("octopus_runs_finished_total", "counter",
                       "Runs that ended, by outcome, since the server started.")
        out += ["octopus_runs_finished_total{%s} %d" % (_labels({"status": s}), n)
                for s, n in sorted(self._store.finished_runs.items())]
        out += _family("octopus_agents", "gauge", "Agents by state (online: a recent heartbeat).")
        out += ["octopus_agents{state=\"online\"} %d" % agents["online"],
                "octopus_agents{state=\"offline\"} %d" % agents["offline"]]
        out += _family("octopus_agents_waiting", "gauge", "Agents holding a long-poll for work.")
        out += ["octopus_agents_waiting %d" % self._dispatcher.waiting()]
        out += _family("octopus_database_bytes", "gauge", "Size of the database and its WAL.")
        out += ["octopus_database_bytes %d" % self._store.file_sizes()]
        out += self._metrics.lines()
        resp.content_type = CONTENT_TYPE
        resp.text = "\n".join(out) + "\n"


def _family(name, kind, help_text):
    return ["# HELP %s %s" % (name, help_text), "# TYPE %s %s" % (name, kind)]


def _labels(labels):
    return ",".join('%s="%s"' % (k, str(v).replace("\\", "\\\\").replace('"', '\\"')
                                  .replace("\n", "\\n")) for k, v in labels.items())

