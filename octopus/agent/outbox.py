"""Finished results kept on disk until the server acknowledges them.

One file per run (``<run id>.json``) in the agent's data dir, written to a
temporary name and renamed, so a file is either whole or absent.  They
survive the server being down and the agent restarting: a new process loads
them and reports them first.  Files are not fsynced: that would cost a disk
flush per run, and only an OS crash or power loss of the agent's host could
then lose a result - whose run the server records as lost and tries again.
Results hold a task's output: the files are 0600 and the folder 0700,
whatever the umask.
"""
import json
import logging
import os

from octopus.files import private_opener

log = logging.getLogger("octopus.agent")


class Outbox:
    def __init__(self, path):
        self._path = path
        os.makedirs(path, 0o700, exist_ok=True)

    def _file(self, run_id):
        return os.path.join(self._path, "%d.json" % run_id)

    def add(self, result):
        """Keep ``result``; a full or broken disk is logged, the result stays in memory."""
        tmp = os.path.join(self._path, ".%d.tmp" % result["id"])
        try:
            with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
                json.dump(result, f, separators=(",", ":"))
            os.replace(tmp, self._file(result["id"]))
        except OSError as e:
            try:  # a half-written file would only be swept at the next start
                os.remove(tmp)
            except OSError:
                pass
            log.error("Outbox: result of run %d not saved to disk (%s): it is lost if this "
                      "agent stops before the server takes it", result["id"], e)

    def remove(self, run_ids):
        for run_id in run_ids:
            try:
                os.remove(self._file(run_id))
            except FileNotFoundError:
                pass

    def load(self):
        """Results left by a former process, oldest run first."""
        results = []
        for name in os.listdir(self._path):
            stem, ext = os.path.splitext(name)
            if ext == ".tmp":  # a write cut short: its run is still in the server's hands
                os.remove(os.path.join(self._path, name))
                continue
            if ext != ".json" or not stem.isdigit():
                continue
            try:
                with open(os.path.join(self._path, name), encoding="utf-8") as f:
                    result = json.load(f)
                if not isinstance(result, dict) or result.get("id") != int(stem):
                    raise ValueError("not this run's result")
            except (OSError, ValueError) as e:
                log.error("Outbox file %s is unreadable (%s): set aside", name, e)
                os.replace(os.path.join(self._path, name),
                           os.path.join(self._path, name + ".bad"))
                continue
            results.append(result)
        return sorted(results, key=lambda r: r["id"])


REPORT_BATCH = 200
REPORT_BYTES = 4 << 20  # keeps a batch well under the server's 8 MiB limit


def oldest(pending):
    """The oldest results, up to REPORT_BATCH of them and about REPORT_BYTES: one report."""
    batch, size = [], 0
    for item in pending[:REPORT_BATCH]:
        size += len(item.get("output") or "") + len(json.dumps(item.get("result"))) + 200
        if batch and size > REPORT_BYTES:
            break
        batch.append(item)
    return batch
