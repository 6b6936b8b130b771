"""Names shared by server, agent and API (those of earlier Octopus: docs/COMPATIBILITY.md)."""

MAX_RESULT = 1 << 20  # bytes of JSON a run's return value may take (agent and server)


def run_error(kind, message):
    """The result of a run that failed for a reason of Octopus's, not a traceback's."""
    return {"error": {"type": kind, "message": message, "traceback": ""}}


class TaskStatus:
    CREATED = "Created"
    ACTIVE = "Active"
    DONE = "Done"          # an ALL task whose every run has reported
    SUCCESS = "success"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    FINAL = (DONE, SUCCESS, FAILED, COMPLETED, CANCELLED)
    ALL = (CREATED, ACTIVE) + FINAL


class RunStatus:
    QUEUED = "queued"      # waiting for its time, its agent, or the run before it
    ASSIGNED = "assigned"  # waiting for its agent to pick it up
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    LOST = "lost"          # its agent went away (or no longer had it) before reporting
    TIMEOUT = "timeout"    # stopped by its agent for taking longer than its timeout
    CANCELLED = "cancelled"  # stopped (or never started) because an operator cancelled it
    SKIPPED = "skipped"    # a recurring slot not run: the previous run was still going

    OPEN = (ASSIGNED, RUNNING)  # on an agent
    PENDING = (QUEUED, ASSIGNED, RUNNING)  # not finished
    REPORTED = (SUCCESS, FAILED, TIMEOUT, CANCELLED)  # what an agent may report
    FINAL = (SUCCESS, FAILED, TIMEOUT, CANCELLED, LOST, SKIPPED)
    ALL = (QUEUED,) + OPEN + FINAL


class TaskOwnership:
    ALL = "ALL"            # every agent online when the task is assigned
    ANYONE = "Anyone"      # one agent, the least busy
    SPECIFIC = "Specific"  # the agent named in ``owner``


class TaskType:
    ADHOC = "Adhoc"
    SCHEDULED = "Scheduled"
    INTERVAL = "Interval"

    ALL = (ADHOC, SCHEDULED, INTERVAL)
    RECURRING = (SCHEDULED, INTERVAL)


class Overlap:
    SKIP, QUEUE, PARALLEL = "skip", "queue", "parallel"
    ALL = (SKIP, QUEUE, PARALLEL)


class CatchUp:
    ONCE, ALL_SLOTS, NONE = "once", "all", "none"
    ALL = (ONCE, ALL_SLOTS, NONE)
