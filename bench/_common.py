"""What every benchmark script shares: the machine line and the update of its section of docs/benchmarks.md.

Plain standard library, so that it also imports in the Pythae environment of bench_training.py.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

HEADER = "# Benchmarks\n\nEach section is written by its script in `bench/`.\n"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(threads: int, torch_version: str, *, per: str = "") -> str:
    """``AMD EPYC ..., 2 cores (1 torch thread per trainer), Python 3.11.7, torch 2.13.0+cpu``."""
    plural = "s" if threads > 1 else ""
    return (f"{cpu_name()}, {os.cpu_count()} cores ({threads} torch thread{plural}{' ' + per if per else ''}), "
            f"Python {platform.python_version()}, torch {torch_version}")


def write_section(path: Path, start: str, end: str, section: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` (or append ``section``).

    Other scripts write other sections of the same file: it is read right before writing.
    """
    text = path.read_text() if path.exists() else HEADER
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
