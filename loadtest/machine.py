"""What the machine a load test ran on was: cores, CPU model, memory, and how loaded it was before the run."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory and the load averages now (the lead's training may share the cores)."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    load = os.getloadavg()
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gib": memory_gib,
            "loadavg_1_5_15": [round(x, 2) for x in load], "python": platform.python_version(),
            "platform": platform.platform()}
