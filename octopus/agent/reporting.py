"""The agent's reporting of finished results: batches, refusals, retries.

A mixin of Agent (core.py): it uses the agent's bookkeeping (``_lock``,
``_pending``, ``_stopping``, ``_outbox``) and its clients.
"""
import logging
import time

from octopus.agent.client import Backoff, ServerError, log_failure as _log_failure
from octopus.agent.outbox import oldest
from octopus.constants import run_error

log = logging.getLogger("octopus.agent")


class Reporting:
    def report(self, client):
        """Send finished results; returns how many the server settled (acked or refused)."""
        with self._lock:
            batch = oldest(self._pending)
        return self._send(client, batch) if batch else 0

    def _send(self, client, batch):
        try:
            reply = client.request("POST", "/agent/results",
                                   {"client": self.name, "results": batch})
        except ServerError as e:
            if e.status == 409:  # we hold none of these runs any more: another try has them
                log.warning("Server fenced the results of runs %s: %s",
                            ", ".join(str(r["id"]) for r in batch), e.message)
                self._settled({r["id"] for r in batch})
                return len(batch)
            if e.status not in (400, 413):
                raise
            return self._refused(client, batch, e)
        done = set(reply["acked"])
        for item in reply["rejected"]:
            log.warning("Server refused the result of run %s: %s", item["id"], item["reason"])
            done.add(item["id"])
        self._settled(done)
        return len(done)

    def _refused(self, client, batch, error):
        """A batch the server will not take must not block the queue behind it.

        Results go one by one; one refused alone is replaced by a small failed
        result saying why, and dropped if even that is refused.
        """
        if len(batch) > 1:
            return sum(self._send(client, [item]) for item in batch)
        [item] = batch
        if item.get("mended"):
            log.error("Result of run %s dropped: the server refused it (%s)", item["id"], error)
            self._settled({item["id"]})
            return 1
        log.warning("Server refused the result of run %s (%s); reporting a failure instead",
                    item["id"], error)
        mended = {"id": item["id"], "lease": item.get("lease"), "status": "failed",
                  "output": None, "mended": True,
                  "duration": item.get("duration"), "result": run_error(
                      "ReportRefused", "the server refused this run's result: %s" % error.message)}
        with self._lock:
            self._pending = [mended if r is item else r for r in self._pending]
        return self._send(client, [mended])

    def _settled(self, ids):
        with self._lock:
            self._pending = [r for r in self._pending if r["id"] not in ids]
            for run_id in ids:
                self._stopping.pop(run_id, None)
        self._outbox.remove(ids)

    def _report_loop(self):
        """Send what the quick path in _on_done could not, retrying until it is acked."""
        client, backoff = self._client(), Backoff(base=self.config.RETRY_DELAY or 0.5)
        attempts = 0
        while not self._stop.is_set():
            if not self._report_later.wait(1.0):
                continue
            self._report_later.clear()
            try:
                with self._reporting:
                    while self.report(client):
                        pass
                attempts = 0
                backoff.reset()
            except Exception as e:
                self._report_later.set()
                attempts += 1
                delay = (self.config.RETRY_DELAY if attempts <= self.config.MAX_RETRY_ATTEMPTS
                         else backoff.next_delay())
                _log_failure("Reporting %d results" % len(self._pending), e, delay)
                self._stop.wait(delay)

    def _report_until(self, until):
        """Report what is pending, each request bounded by what is left until ``until``."""
        # A report in flight (its own timeout is longer) is waited for only so long.
        if not self._reporting.acquire(timeout=seconds_left(until)):
            return
        client = self._client()
        try:
            while True:
                client.timeout = seconds_left(until)
                if client.timeout < 0.1 or not self.report(client):
                    break
        except Exception as e:
            _log_failure("Reporting %d results before stopping" % len(self._pending), e)
        finally:
            self._reporting.release()
            client.close()


def seconds_left(until, cap=float("inf")):
    """Seconds from now to ``until`` (monotonic), at most ``cap``, never below 0."""
    return max(0.0, min(cap, until - time.monotonic()))
