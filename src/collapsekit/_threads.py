"""Thread limits for small dense work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def single_threaded(enabled: bool = True) -> Iterator[None]:
    """One torch and one BLAS thread in this process, restored afterwards.

    For small models and matrices extra threads only spin-wait between short kernels, and on a busy
    machine they are many times slower (one verification: 7.8 s → 0.5 s on a loaded 2-core machine).
    """
    if not enabled:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
