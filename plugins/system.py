"""System plugin: reports facts about the agent host (CPU, load, disk, memory)."""

import os
import platform
import shutil
import socket


def _load():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _disk():
    try:
        usage = shutil.disk_usage("/")
    except OSError:
        return {"total": None, "used": None, "free": None}
    return {"total": usage.total, "used": usage.used, "free": usage.free}


def _memory():
    memory = {"total": None, "available": None}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if not parts:
                    continue
                try:
                    value = int(parts[0])
                except ValueError:
                    continue
                if len(parts) > 1 and parts[1].lower() == "kb":
                    value *= 1024
                if key == "MemTotal":
                    memory["total"] = value
                elif key == "MemAvailable":
                    memory["available"] = value
    except OSError:
        pass
    return memory


def info():
    """Return hostname, platform, python, cpu_count, load, disk and memory of the host.

    load is os.getloadavg() as a list (null where unavailable); disk is
    {"total", "used", "free"} in bytes for "/"; memory is {"total",
    "available"} in bytes from /proc/meminfo (null fields where unavailable).
    """
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load": _load(),
        "disk": _disk(),
        "memory": _memory(),
    }
