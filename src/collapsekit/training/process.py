"""What training changes in the calling process, put back when it ends (issue 10 §4).

``train()`` seeds the global generators (the initial weights, each epoch's noise), and Lightning Fabric may
change the default dtype, cuDNN's and the matmul flags, the thread count and, for distributed runs, the
environment variables of its process group. :func:`caller_state` snapshots all of them and restores them on
exit, so a program that trains in the middle of its own work finds its random streams, dtype, threads and
flags as it left them. Deterministic kernels are switched on and off by
:func:`collapsekit.training.trainer.deterministic_algorithms`.

Not restored: what importing torch or Lightning sets once for the life of the process (for instance
``PYTORCH_NVML_BASED_CUDA_CHECK``), and the inter-op thread count, which torch fixes at its first parallel work.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Environment variables Lightning Fabric sets up for a process group (restored, or removed again).
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "GROUP_RANK", "RANK", "WORLD_SIZE",
                   "LOCAL_WORLD_SIZE")
#: The seed a CUDA generator starts from before anyone seeds it (c10's ``default_rng_seed_val``).
DEFAULT_CUDA_SEED = 67280421310721


@dataclass
class CallerState:
    """A snapshot of what training may change in the process."""

    torch_rng: torch.Tensor
    cuda: tuple[str, Any]
    python_rng: Any
    numpy_rng: Any
    default_dtype: torch.dtype
    threads: int
    grad_enabled: bool
    flags: dict[str, Any]
    matmul_precision: str
    environment: dict[str, str | None]

    @classmethod
    def now(cls) -> CallerState:
        return cls(torch_rng=torch.get_rng_state(), cuda=_cuda_snapshot(), python_rng=random.getstate(),
                   numpy_rng=np.random.get_state(), default_dtype=torch.get_default_dtype(),
                   threads=torch.get_num_threads(), grad_enabled=torch.is_grad_enabled(), flags=_flags(),
                   matmul_precision=torch.get_float32_matmul_precision(),
                   environment={key: os.environ.get(key) for key in DISTRIBUTED_ENV})

    def restore(self) -> None:
        torch.set_rng_state(self.torch_rng)
        _cuda_restore(self.cuda)
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)
        if torch.get_default_dtype() != self.default_dtype:
            torch.set_default_dtype(self.default_dtype)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        torch.set_grad_enabled(self.grad_enabled)
        for name, value in self.flags.items():
            module, _, attribute = name.rpartition(".")
            target = {"cudnn": torch.backends.cudnn, "cuda.matmul": torch.backends.cuda.matmul}[module]
            if getattr(target, attribute) != value:
                setattr(target, attribute, value)
        if torch.get_float32_matmul_precision() != self.matmul_precision:
            torch.set_float32_matmul_precision(self.matmul_precision)
        for key, value in self.environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _flags() -> dict[str, Any]:
    return {"cudnn.benchmark": torch.backends.cudnn.benchmark, "cudnn.deterministic": torch.backends.cudnn.deterministic,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}


def _cuda_snapshot() -> tuple[str, Any]:
    """CUDA's generators: their states when CUDA is initialized; else the seeds queued for its start (a
    ``torch.manual_seed`` before CUDA starts is applied when it does)."""
    if torch.cuda.is_initialized():
        return "states", torch.cuda.get_rng_state_all()
    tracker = getattr(torch.cuda, "_lazy_seed_tracker", None)
    if tracker is None:
        return "unknown", None
    return "queued", (tracker.manual_seed_all_cb, tracker.manual_seed_cb, list(tracker.call_order))


def _cuda_restore(saved: tuple[str, Any]) -> None:
    kind, value = saved
    if kind == "states":
        torch.cuda.set_rng_state_all(value)
        return
    if kind != "queued":
        return
    if not torch.cuda.is_initialized():      # what the caller had queued for CUDA's start, and nothing else
        tracker = torch.cuda._lazy_seed_tracker
        tracker.manual_seed_all_cb, tracker.manual_seed_cb, tracker.call_order = value[0], value[1], list(value[2])
        return
    # The run started CUDA: its generators as a start would have left them for the caller, then the caller's seeds.
    for generator in torch.cuda.default_generators:
        generator.manual_seed(DEFAULT_CUDA_SEED)
    for call in value[2]:
        if call:
            call[0]()


@contextlib.contextmanager
def caller_state() -> Iterator[None]:
    """Restore the calling process's random generators, default dtype, threads, flags and process-group
    environment on exit (however the block ends)."""
    saved = CallerState.now()
    try:
        yield
    finally:
        saved.restore()
