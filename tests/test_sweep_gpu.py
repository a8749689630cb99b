"""Sweeps on GPUs, checked without one (issue 14 §2): Ray tasks request ``num_gpus`` (a mocked ``ray``), local
workers are pinned round-robin with ``CUDA_VISIBLE_DEVICES`` (``torch.cuda.device_count`` mocked in the parent;
the workers are real processes), and a point's accelerator follows its GPUs."""

from __future__ import annotations

import os
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from collapsekit.errors import ParameterError
from collapsekit.experiments.executors import (LocalExecutor, RayExecutor, TaskFailure, gpu_slots, point_accelerator,
                                               resolve_gpus_per_point)
from collapsekit.training import RunConfig


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


# -- the rules ----------------------------------------------------------------------------------------------
def test_gpus_per_point_defaults_and_checks(monkeypatch):
    fake_gpus(monkeypatch, 0)
    assert resolve_gpus_per_point(None, "cpu") == resolve_gpus_per_point(None, "auto") == 0
    assert resolve_gpus_per_point(None, "cuda") == resolve_gpus_per_point(None, "gpu") == 1
    fake_gpus(monkeypatch, 2)
    assert resolve_gpus_per_point(None, "auto") == 1 and resolve_gpus_per_point(None, "cpu") == 0
    assert resolve_gpus_per_point(None, "auto", executor="ray") == 0     # a GPU no node has would never start
    assert resolve_gpus_per_point(0.25, "cpu") == 0.25 and resolve_gpus_per_point(2, "cpu") == 2
    for bad, message in ((-1, "a number ≥ 0"), (0.3, "must be 1/n"), (1.5, "whole number"), (True, "a number")):
        with pytest.raises(ParameterError, match=message):
            resolve_gpus_per_point(bad, "cpu")


def test_slots_and_accelerators():
    assert gpu_slots(["0", "1"], 1) == ["0", "1"]
    assert gpu_slots(["0", "1"], 0.5) == ["0", "1", "0", "1"]              # first workers on different GPUs
    assert gpu_slots(["4", "5", "6", "7"], 2) == ["4,5", "6,7"]
    assert gpu_slots(["0", "1"], 0) == [""]                                # hidden
    with pytest.raises(ParameterError, match="no CUDA device is visible here"):
        gpu_slots([], 1)
    with pytest.raises(ParameterError, match="shows 2 GPU"):
        gpu_slots(["0", "1"], 4)
    assert point_accelerator("cpu", 1) == "cuda" and point_accelerator("auto", 1) == "auto"
    assert point_accelerator("cuda", 0) == "cpu" and point_accelerator("gpu", 0) == "cpu"
    assert point_accelerator("cpu", 0) == "cpu" and point_accelerator("auto", 0) == "auto"


# -- local workers ------------------------------------------------------------------------------------------
def _visible(task: int) -> tuple[int, str | None]:
    """In a worker: its pid and what CUDA would see; slow enough that every worker gets a task."""
    time.sleep(0.3)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def seen(executor: LocalExecutor, tasks: int) -> dict[int, set[str | None]]:
    by_worker: dict[int, set[str | None]] = {}
    for _, outcome in executor.run(_visible, list(range(tasks))):
        assert not isinstance(outcome, TaskFailure), outcome
        pid, visible = outcome
        by_worker.setdefault(pid, set()).add(visible)
    return by_worker


def test_local_workers_are_pinned_one_gpu_each(monkeypatch):
    fake_gpus(monkeypatch, 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    executor = LocalExecutor(gpus_per_point=1)
    assert executor.workers == 2 and executor.slots == ["0", "1"]          # one worker per GPU by default
    by_worker = seen(executor, 6)
    assert len(by_worker) == 2 and all(len(v) == 1 for v in by_worker.values())
    assert sorted(v for values in by_worker.values() for v in values) == ["0", "1"]


def test_local_workers_take_the_parents_gpu_names_and_hide_them_for_cpu_points(monkeypatch):
    fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert LocalExecutor(gpus_per_point=0.5).slots == ["5", "7", "5", "7"]
    assert LocalExecutor(gpus_per_point=0.5).workers == 4
    cpu_points = LocalExecutor(workers=1, gpus_per_point=0)
    assert list(seen(cpu_points, 2).values()) == [{""}]                   # CPU points see no GPU


def test_without_gpus_local_workers_are_left_alone(monkeypatch):
    fake_gpus(monkeypatch, 0)
    executor = LocalExecutor(workers=1)
    assert executor.slots is None and executor.gpus_per_point == 0
    with pytest.raises(ParameterError, match="no CUDA device is visible here"):
        LocalExecutor(gpus_per_point=1)


# -- Ray ------------------------------------------------------------------------------------------------------
class FakeRay(types.ModuleType):
    """Enough of ``ray`` for RayExecutor: tasks run at once, in this process."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.remote_options: list[dict[str, Any]] = []
        self.exceptions = types.SimpleNamespace(RayTaskError=type("RayTaskError", (Exception,), {}),
                                                RayError=type("RayError", (Exception,), {}))
        self.initialized = False

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.initialized = True

    def shutdown(self) -> None:
        self.initialized = False

    def remote(self, **options: Any):
        self.remote_options.append(options)

        def decorate(fn):
            return types.SimpleNamespace(remote=lambda *args: ("ref", fn(*args)))
        return decorate

    def wait(self, refs: list[Any], num_returns: int = 1) -> tuple[list[Any], list[Any]]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: Any) -> Any:
        return ref[1]

    def cancel(self, ref: Any, force: bool = False) -> None:
        pass


@pytest.fixture()
def fake_ray(monkeypatch) -> Iterator[FakeRay]:
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    yield ray


@pytest.mark.parametrize(("given", "accelerator", "expected"),
                         [(1, "cpu", 1.0), (0.5, "cpu", 0.5), (None, "cuda", 1.0), (None, "auto", 0.0),
                          (0, "gpu", 0.0)])
def test_ray_tasks_request_num_gpus(fake_ray, given, accelerator, expected):
    executor = RayExecutor(gpus_per_point=given, accelerator=accelerator)
    assert dict(executor.run(abs, [-3, 4])) == {0: 3, 1: 4}
    assert fake_ray.remote_options == [{"num_cpus": 1, "num_gpus": expected, "max_retries": 0}]


# -- the sweep's plumbing ---------------------------------------------------------------------------------------------
class RecordingExecutor:
    """Takes the groups a sweep hands out and fails them (nothing trains); remembers what it was given."""

    def __init__(self, gpus_per_point: float, workers: int = 2) -> None:
        self.gpus_per_point, self.workers, self.groups = gpus_per_point, workers, []

    def run(self, fn, groups):
        self.groups = groups
        for index, _ in enumerate(groups):
            yield index, TaskFailure("not run: recorded by the test")


@pytest.mark.parametrize(("gpus", "accelerator", "expected"), [(1.0, "cpu", "cuda"), (0.0, "cuda", "cpu"),
                                                               (1.0, "auto", "auto")])
def test_a_points_accelerator_and_batch_mode_follow_the_sweep(tmp_path, monkeypatch, gpus, accelerator, expected):
    from collapsekit.experiments import sweep

    made: dict[str, Any] = {}

    def make_executor(name, **kwargs):
        made.update(kwargs)
        made["runner"] = RecordingExecutor(gpus)
        return made["runner"]

    from collapsekit.experiments.sweep import run as sweep_run   # where run_sweep looks it up

    monkeypatch.setattr(sweep_run, "make_executor", make_executor)
    base = RunConfig.parse({"data": {"spec": "gaussian:d=4,n=64,seed=1"},
                            "model": {"kind": "vae", "arch": "linear", "latent_dims": [2]},
                            "train": {"epochs": 1, "accelerator": accelerator}})
    result = sweep.run_sweep(base, {"beta": [0.5, 2.0]}, 1, tmp_path / "sweep", progress=False, plot=False,
                             gpus_per_point=gpus, batch_mode="fast")
    assert made["gpus_per_point"] == gpus and made["accelerator"] == accelerator
    tasks = [task for group in made["runner"].groups for task in group]
    assert len(tasks) == 2 and {task.config["train"]["accelerator"] for task in tasks} == {expected}
    assert {task.batch_mode for task in tasks} == {"fast"}
    assert all(row["status"] == "failed" for row in result.rows)
    with pytest.raises(ParameterError, match="batch mode must be one of exact, fast"):
        sweep.run_sweep(base, {"beta": [0.5]}, 1, tmp_path / "other", progress=False, batch_mode="quick")


def test_the_cli_takes_gpus_per_point_and_batch_mode(tmp_path, capsys, monkeypatch):
    from collapsekit.cli import build_parser, main

    args = build_parser().parse_args(["sweep", "c.yaml", "--gpus-per-point", "0.5", "--batch-mode", "fast"])
    assert args.gpus_per_point == 0.5 and args.batch_mode == "fast"
    fake_gpus(monkeypatch, 0)
    config = tmp_path / "base.yaml"
    config.write_text("data: {spec: 'gaussian:d=4,n=64,seed=1'}\nmodel: {kind: vae, arch: linear, latent_dims: [2]}\n")
    assert main(["sweep", str(config), "--grid", "beta=1,2", "--out", str(tmp_path / "s"),
                 "--gpus-per-point", "1", "--no-progress"]) == 2
    assert "--gpus-per-point 1: no CUDA device is visible here" in capsys.readouterr().err
    assert not (tmp_path / "s" / "points").exists()
