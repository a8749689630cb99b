"""Writing results: atomically (a crash or a full disk never leaves a half-written file behind), and
as plain JSON values."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The lock file a directory lock (:func:`exclusive_directory`) creates in its directory.
LOCK_FILE = ".lock"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    The file gets the permissions a plain ``open(path, "w")`` would (mkstemp's are 0600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike[str], *, what: str, directory: bool = True) -> Path:
    """``path`` as a Path, when this process can write there; else a one-line
    :class:`~collapsekit.errors.ParameterError` that names it (``what`` is the option, e.g. ``"--out"``).

    Checked before any work starts: a regular file where a directory is needed (``path`` itself, or one of its
    parents), a directory where a file is needed (``directory=False``), or a place where nothing can be created
    (a read-only or virtual file system such as ``/proc``, a folder without write permission). Nothing is left
    behind: the folder that would receive the output (``path`` itself when it is an existing directory, else its
    nearest existing parent) is probed with a temporary file, removed at once.
    """
    from collapsekit.errors import ParameterError

    target = Path(path)
    fail = lambda reason: ParameterError(f"{what} {target}: cannot be written: {reason}")  # noqa: E731
    if directory and target.exists() and not target.is_dir():
        raise fail("it is a file, not a directory")
    if not directory and target.is_dir():
        raise fail("it is a directory, not a file")
    folder = target if directory and target.is_dir() else target.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise fail(f"{folder} is a file, not a directory")
    try:
        handle, name = tempfile.mkstemp(prefix=".collapsekit-probe-", dir=folder)
    except OSError as exc:
        raise fail(f"nothing can be created in {folder} ({exc.strerror or exc})") from None
    os.close(handle)
    os.unlink(name)
    return target


@contextlib.contextmanager
def exclusive_directory(directory: str | os.PathLike[str], busy: str) -> Iterator[None]:
    """Hold ``directory``'s lock (an ``flock`` on its :data:`LOCK_FILE`) for the duration; raise a
    :class:`~collapsekit.errors.ParameterError` saying ``busy`` when another process holds it.

    The kernel drops an ``flock`` when its holder dies, so a killed process never leaves a stale lock.
    The sweep locks its directory with it, the trainer its run directory.
    """
    from collapsekit.errors import ParameterError

    try:
        import fcntl
    except ImportError:                           # Windows: no advisory locks; run one at a time
        yield
        return
    with open(Path(directory) / LOCK_FILE, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ParameterError(busy) from None
        yield


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, tuples and paths made plain JSON values; non-finite
    floats become None (JSON has no NaN or infinity), mapping keys strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
