"""Where a result came from: when, which castinspect, which command, on what machine. Every JSON
result a command or benchmark writes carries it, so a number in the docs has its command."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

from castinspect.core import __version__
from castinspect.core.records import utc_now


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it: ``castinspect ...`` for the console script and for
    ``python -m castinspect``, the script as given otherwise."""
    argv = list(sys.argv if argv is None else argv)
    if argv and (Path(argv[0]).name in ("castinspect", "__main__.py")):
        argv[0] = "castinspect"
    return " ".join(shlex.quote(a) for a in argv)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict:
    return {"date": utc_now(), "castinspect": __version__, "command": command_line(),
            "python": platform.python_version(), "cpu": cpu_name(), "cores": os.cpu_count()}
