"""Shared test set-up."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op torch thread per test: ``make test`` runs two pytest-xdist workers on two cores, and
    two workers with two threads each oversubscribe them, which slows small tensor ops several times.
    Processes that tests start (DDP ranks, sweep workers) set their own. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
