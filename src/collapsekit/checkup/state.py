"""Leaving the user's things as found: random states saved and restored, a working copy to operate on."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from collapsekit.errors import ParameterError


@contextmanager
def preserved_random_state(device: torch.device) -> Iterator[None]:
    """Save the Python, numpy, torch CPU and (for a CUDA model) CUDA random states; restore them on exit."""
    py, npy = random.getstate(), np.random.get_state()
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def reseed(seed: int, device: torch.device) -> None:
    """Put the torch generators the user's code draws from (CPU, and the model's CUDA device) at ``seed``:
    two calls of ``loss_fn`` after ``reseed`` draw the same encoder noise."""
    torch.random.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def working_copy(*things: Any) -> tuple[Any, ...]:
    """A deep copy of ``things`` taken together (an optimiser's copy holds the copied model's parameters)."""
    try:
        return copy.deepcopy(things)
    except Exception as exc:  # noqa: BLE001 — any failure to copy means the doctor cannot operate safely
        raise ParameterError(f"the doctor works on a copy of the model and optimiser, and copying failed: "
                             f"{type(exc).__name__}: {exc}") from None


def model_device(modules: list[torch.nn.Module]) -> torch.device:
    """Where the model's first parameter (or buffer) lives; the CPU for a model without any."""
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            return tensor.device
    return torch.device("cpu")
