"""The sweep directory's lock: two invocations never run the same points at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from collapsekit._io import exclusive_directory


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold the sweep directory's lock (the trainer's lock too: :func:`collapsekit._io.exclusive_directory`).

    The kernel drops an ``flock`` when its holder dies, so a killed sweep never leaves a stale lock.
    """
    with exclusive_directory(out, f"another sweep is running in {out}; wait for it to finish"):
        yield
