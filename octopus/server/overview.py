"""Routes the dashboard reads besides the task and agent lists:
``GET /stats`` (the overview) and ``GET /schedule/preview`` (a schedule's next times)."""
import time

from octopus import schedule
from octopus.constants import TaskType
from octopus.server import validate
from octopus.server.errors import bad_request
from octopus.store.recurring import first_slot
from octopus.timeutil import iso, parse_iso

MAX_PREVIEW = 20
MIN_HOURS, MAX_HOURS = 0.01, 24 * 7  # how far back /stats counts runs
MAX_BUCKETS = 288


class StatsResource:
    """``GET /stats``: tasks by status, agents online/offline, runs by outcome over time."""

    def __init__(self, store, clock=time.time):
        self._store = store
        self._clock = clock

    def on_get(self, req, resp):
        validate.only_params(req, ("hours", "buckets"))
        hours = validate.float_param(req, "hours", 1, MIN_HOURS, MAX_HOURS)
        count = validate.int_param(req, "buckets", 12, 1, MAX_BUCKETS)
        bucket = hours * 3600 / count
        since = self._clock() - hours * 3600
        tasks, running = self._store.counts()
        resp.media = {
            "tasks": tasks,
            "running": running,
            "agents": self._store.agent_counts(),
            "runs": {"since": iso(since), "bucket_seconds": bucket,
                     "buckets": self._store.run_outcomes(since, bucket, count)},
        }


class SchedulePreviewResource:
    """``GET /schedule/preview?type=&interval=&timezone=&execution_start_time=&count=``:
    the next run times a recurring task with these fields would have."""

    def __init__(self, clock=time.time):
        self._clock = clock

    def on_get(self, req, resp):
        validate.only_params(req, ("type", "interval", "timezone", "execution_start_time",
                                   "count"))
        kind = req.get_param("type") or TaskType.SCHEDULED
        if kind not in TaskType.RECURRING:
            raise bad_request("type must be Interval or Scheduled", "type")
        count = validate.int_param(req, "count", 5, 1, MAX_PREVIEW)
        body = {"type": kind, "interval": req.get_param("interval"),
                "timezone": req.get_param("timezone") or None,
                "execution_start_time": req.get_param("execution_start_time") or None}
        if body["interval"] is None:
            raise bad_request("interval is required", "interval")
        tz = validate.timezone_field(body["timezone"])
        interval = validate.interval_field(body["interval"], kind, tz)
        start = validate.time_field(body, "execution_start_time")
        task = dict(body, interval=interval, execution_start_time=start)
        times = []
        try:
            times.append(first_slot(task, self._clock()))
            anchor = parse_iso(start) if start else times[0]
            while len(times) < count:
                times.append(schedule.next_fire(kind, interval, schedule.zone(tz), anchor,
                                                times[-1]))
        except schedule.ScheduleError as e:  # EndOfTime: near the year 9999
            raise bad_request("execution_start_time: %s (%d of %d runs fit)"
                              % (e, len(times), count), "execution_start_time")
        resp.media = {"next": [iso(t) for t in times], "interval": interval, "timezone": tz}
