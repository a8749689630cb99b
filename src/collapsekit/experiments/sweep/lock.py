"""The sweep directory's lock: two invocations never run the same points at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from collapsekit.errors import ParameterError
from collapsekit.experiments.sweep.layout import LOCK_FILE


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold the sweep directory's lock: two invocations must not run the same points at once.

    The kernel drops an ``flock`` when its holder dies, so a killed sweep never leaves a stale lock.
    """
    try:
        import fcntl
    except ImportError:                           # Windows: no advisory locks; run one sweep at a time
        yield
        return
    with open(out / LOCK_FILE, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ParameterError(f"another sweep is running in {out}; wait for it to finish") from None
        yield
