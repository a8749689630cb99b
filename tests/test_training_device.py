"""What would break or crawl on a GPU, checked on the CPU: the optimiser state restored after Fabric's
set-up (a `64-true` kill → resume round trip), no host read in the step loop (a dispatch counter; a
step of every model × objective on the `meta` device, where any host read or device-less tensor
raises), and deterministic mode set for the run only."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import torch
import torch.optim.optimizer as torch_optimizer
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from collapsekit.errors import ParameterError
from collapsekit.training import RunConfig, Trainer, TrainingDiverged, train
from collapsekit.training import trainer as trainer_module
from collapsekit.training.checkpoint import latest_checkpoint
from collapsekit.training.trainer import (CUBLAS_WORKSPACE_CONFIG, build_model_from_config, build_optimizer,
                                          build_objective_from_config, deterministic_algorithms, load_training_data)

SMALL = {"data": {"spec": "gaussian:d=6,decay=0.6,n=256,seed=3"},
         "model": {"kind": "vae", "arch": "mlp", "latent_dims": [3], "hidden": [16]},
         "train": {"epochs": 4, "batch_size": 64, "seed": 5, "progress": False}}


def small_config(**overrides) -> RunConfig:
    return RunConfig.parse(SMALL).with_overrides(overrides)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run_dir / "checkpoints") / "model.safetensors")


# -- precision --------------------------------------------------------------------------------------
def test_a_64_true_run_resumes_after_a_crash_to_the_uninterrupted_result(tmp_path):
    """Fabric converts the model to float64 in ``setup``; the optimiser state is loaded after it, so Adam's
    moments become float64 too (loaded before, they stayed float32 and the first step failed)."""
    config = small_config(**{"train.precision": "64-true"})
    reference = train(config, tmp_path / "reference")
    assert all(p.dtype == torch.float64 for p in reference.model.parameters())

    calls = {"n": 0}

    class Crash(Exception):
        pass

    def crash_in_third_epoch(module, inputs):
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 2:
            raise Crash

    torch.manual_seed(config.train.seed)
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    model.register_forward_pre_hook(crash_in_third_epoch)
    with pytest.raises(Crash):
        Trainer(config, tmp_path / "crashed", data=data, model=model).fit()
    resumed = train(config, tmp_path / "crashed", resume=True)
    assert resumed.resumed_from == 2
    assert without_time(metrics(tmp_path / "crashed")) == without_time(metrics(tmp_path / "reference"))
    expected, got = final_weights(tmp_path / "reference"), final_weights(tmp_path / "crashed")
    assert all(v.dtype == torch.float64 and torch.equal(expected[k], got[k]) for k, v in expected.items())


def test_precision_is_a_configuration_key_and_a_flag(tmp_path):
    from collapsekit.cli import build_parser

    args = build_parser().parse_args(["train", "--precision", "bf16-mixed", "--out", str(tmp_path)])
    assert args.train__precision == "bf16-mixed"
    with pytest.raises(ParameterError, match="precision"):
        small_config(**{"train.precision": "fp8"})
    result = train(small_config(**{"train.precision": "bf16-mixed", "train.epochs": 1}), tmp_path / "bf16")
    record = result.metrics[-1]
    assert all(isinstance(record[k], float) and abs(record[k]) < 1e6 for k in ("loss", "reconstruction", "kl"))


def test_a_precision_whose_package_is_missing_is_a_parameter_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("transformer_engine") is not None:
        pytest.skip("NVIDIA Transformer Engine is installed")
    with pytest.raises(ParameterError, match="transformer-engine.*a package is missing"):
        train(small_config(**{"train.precision": "transformer-engine"}), tmp_path / "run")


def test_a_diverging_run_names_its_first_non_finite_loss(tmp_path):
    """No host read per step, yet the message says "inf" when the loss first overflowed (the epoch's sum is
    nan by then): the first non-finite loss is kept on the device and read once, when the run stops."""
    config = RunConfig.parse({"data": {"spec": "gaussian:eigs=9:4:1:0.25,n=256,exact=1"},
                              "model": {"kind": "vae", "arch": "linear", "latent_dims": [3]},
                              "optim": {"lr": 100.0}, "train": {"epochs": 3, "batch_size": 64, "progress": False}})
    with pytest.raises(TrainingDiverged, match="^the loss became inf during epoch 1; "):
        train(config, tmp_path / "run")


# -- host reads -----------------------------------------------------------------------------------------
#: aten operators whose result the host must wait for: a scalar read (item, float(), int(), bool(), if
#: tensor:), or an output whose size depends on the values.
HOST_READS = {"_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "equal", "_unique2", "unique_dim",
              "unique_consecutive", "repeat_interleave"}


class HostReads(TorchDispatchMode):
    """Counts the host reads of every tensor operation (dispatched below Python, so nothing escapes by
    going through torch functions), plus ``tolist`` and ``numpy``, which read CPU memory directly.

    Reads inside ``Optimizer.step`` are left out: torch's Adam reads its step counter, a CPU tensor
    whatever the parameters' device (no device synchronisation on a GPU).
    """

    def __init__(self) -> None:
        super().__init__()
        self.count, self.in_optimizer, self.where = 0, 0, []

    def read(self, name: str) -> None:
        if not self.in_optimizer:
            self.count += 1
            self.where.append(name)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_READS:
            self.read(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def host_reads_per_epoch(config: RunConfig, run_dir: Path, monkeypatch) -> tuple[list[int], list[int]]:
    """(host reads inside each epoch's step loop, host reads per epoch in all) of training ``config``."""
    counter = HostReads()
    in_loop: list[int] = []
    starts: list[int] = []
    run_epoch, write_epoch = trainer_module.Trainer._run_epoch, trainer_module.Trainer._write_epoch

    def counted_run_epoch(self, *args, **kwargs):
        starts.append(counter.count)
        sums = run_epoch(self, *args, **kwargs)
        in_loop.append(counter.count - starts[-1])
        return sums

    def counted_write_epoch(self, *args, **kwargs):
        write_epoch(self, *args, **kwargs)
        starts.append(counter.count)                           # the epoch's end: the metrics line and checkpoint

    for name in ("tolist", "numpy"):
        method = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _m=method, _n=name, **k: (counter.read(_n), _m(self, *a, **k))[1])
    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", counted_run_epoch)
    monkeypatch.setattr(trainer_module.Trainer, "_write_epoch", counted_write_epoch)
    hooks = [torch_optimizer.register_optimizer_step_pre_hook(
                 lambda *a: setattr(counter, "in_optimizer", counter.in_optimizer + 1)),
             torch_optimizer.register_optimizer_step_post_hook(
                 lambda *a: setattr(counter, "in_optimizer", counter.in_optimizer - 1))]
    try:
        with counter:
            train(config, run_dir)
    finally:
        for hook in hooks:
            hook.remove()
        monkeypatch.undo()
    per_epoch = [end - start for start, end in zip(starts[::2], starts[1::2])]
    return in_loop, per_epoch


OBJECTIVES = {
    "elbo": {},
    "free bits": {"objective.free_bits": 0.05},
    "iwae": {"objective.name": "iwae", "objective.k": 3},
    "infovae": {"objective.name": "infovae", "objective.alpha": 0.5, "objective.lambda": 10.0},
    "capacity": {"schedule.name": "capacity", "schedule.settings": {"c_max": 5.0, "steps": 3}},
    "hvae, grad clip, cosine lr": {"model.kind": "hvae", "model.latent_dims": [3, 2], "optim.grad_clip": 1.0,
                                   "optim.lr_schedule": "cosine", "schedule.name": "linear",
                                   "schedule.settings": {"warmup_steps": 3}},
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_host_reads_per_epoch_do_not_grow_with_the_number_of_steps(objective, tmp_path, monkeypatch):
    """2 and 8 steps per epoch: the same host reads per epoch (the epoch's record, the monitor's end of
    epoch), and none inside the step loop."""
    counts = {}
    for steps in (2, 8):
        config = small_config(**{"data.spec": f"gaussian:d=6,decay=0.6,n={32 * steps},seed=3", "train.batch_size": 32,
                                 "train.epochs": 2, "train.progress": True, **OBJECTIVES[objective]})
        counts[steps] = host_reads_per_epoch(config, tmp_path / f"run{steps}", monkeypatch)
    (loop2, epoch2), (loop8, epoch8) = counts[2], counts[8]
    assert loop2 == loop8 == [0, 0]
    assert epoch2 == epoch8 and epoch2[0] > 0                  # the counter sees the per-epoch reads


# -- the meta device ------------------------------------------------------------------------------------
class _MetaFabric:
    world_size, global_rank = 1, 0

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        loss.backward()

    @staticmethod
    def clip_gradients(model, optimizer, max_norm: float, error_if_nonfinite: bool = True) -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, error_if_nonfinite=error_if_nonfinite)


META_OBJECTIVES = {
    "elbo": {"objective": {"name": "elbo", "beta": [0.5]}},
    "free bits": {"objective": {"name": "elbo", "free_bits": 0.1}},
    "iwae": {"objective": {"name": "iwae", "k": 3}},
    "infovae": {"objective": {"name": "infovae", "alpha": 0.5, "lambda": 10.0}},
    "capacity": {"schedule": {"name": "capacity", "settings": {"c_max": 5.0, "steps": 2}}},
}


@pytest.mark.parametrize(("kind", "arch", "objective"),
                         list(itertools.product(["vae", "cvae", "hvae"], ["linear", "mlp", "conv"], META_OBJECTIVES)))
def test_a_training_step_on_the_meta_device(kind, arch, objective):
    """The trainer's step loop (two steps, the collapse monitor on, gradient clipping) with every tensor on
    ``meta``: a host read (``item``, ``float()``, ``if tensor``) raises there, and so does mixing in a
    non-scalar tensor made on the CPU. One β per level for the hierarchy."""
    from collapsekit import _progress as terminal
    from collapsekit.training.monitor import CollapseMonitor

    data = {"spec": "digits", "split": "quadrants"} if kind == "cvae" else {"spec": "digits"}
    latent = [4, 2] if kind == "hvae" else [4]
    settings = json.loads(json.dumps(META_OBJECTIVES[objective]))
    if kind == "hvae" and "beta" in settings.get("objective", {}):
        settings["objective"]["beta"] = [0.5, 2.0]
    config = RunConfig.parse({"data": data, "model": {"kind": kind, "arch": arch, "latent_dims": latent, "hidden": [8],
                                                      "channels": [4, 2]},
                              "optim": {"grad_clip": 1.0}, "train": {"epochs": 1, "batch_size": 8}, **settings})
    cpu_data = load_training_data(config)
    torch.manual_seed(0)
    model = build_model_from_config(config, cpu_data).to("meta")
    objective_fn, schedule = build_objective_from_config(config)
    x = cpu_data.x[:16].to("meta")
    y = None if cpu_data.y is None else cpu_data.y[:16].to("meta")
    optimizer = build_optimizer(config, list(model.parameters()))
    monitor = CollapseMonitor.from_config(config, cpu_data, total_steps=2, warn=False, seed=0)
    with terminal.training_progress(1, 2, enabled=False) as progress:
        sums = Trainer(config, "unused")._run_epoch(_MetaFabric(), model, optimizer, objective_fn, schedule, x, y, 1, 2,
                                                    config.objective.k if objective == "iwae" else 1, progress,
                                                    monitor)
    assert sums["loss"].device.type == "meta" and sums["count"].device.type == "meta"
    assert all(p.device.type == "meta" and p.grad is not None for p in model.parameters() if p.requires_grad)


# -- deterministic mode -------------------------------------------------------------------------------
@pytest.fixture()
def restore_determinism():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def determinism() -> tuple[bool, bool]:
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


@pytest.mark.parametrize("caller", [(False, False), (True, False), (True, True)])
def test_train_leaves_the_deterministic_setting_as_it_found_it(caller, tmp_path, restore_determinism, monkeypatch):
    torch.use_deterministic_algorithms(caller[0], warn_only=caller[1])
    during = []
    run_epoch = trainer_module.Trainer._run_epoch

    def spy(self, *args, **kwargs):
        during.append(determinism())
        return run_epoch(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", spy)
    train(small_config(**{"train.epochs": 1}), tmp_path / "run")
    assert during == [(True, True)] and determinism() == caller


def test_the_setting_is_restored_when_training_fails(tmp_path, restore_determinism):
    torch.use_deterministic_algorithms(False)
    config = small_config()
    torch.manual_seed(config.train.seed)
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    model.register_forward_pre_hook(lambda module, inputs: (inputs[0] * float("nan"), *inputs[1:]))
    with pytest.raises(TrainingDiverged):
        Trainer(config, tmp_path / "run", data=data, model=model).fit()
    assert determinism() == (False, False)


def _process_state() -> dict:
    """What a caller's process holds that training could change."""
    import random

    import numpy as np

    tracker = getattr(torch.cuda, "_lazy_seed_tracker", None)     # seeds queued for CUDA's start
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()[1].copy(),
            "dtype": torch.get_default_dtype(), "threads": torch.get_num_threads(), "grad": torch.is_grad_enabled(),
            "determinism": determinism(), "cudnn": (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic),
            "matmul": torch.get_float32_matmul_precision(),
            "cuda_seeds": None if tracker is None else [id(call) for call in tracker.get_calls()],
            "env": {key: os.environ.get(key) for key in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE")}}


def _same(before: dict, after: dict) -> list[str]:
    import numpy as np

    def equal(a, b):
        return torch.equal(a, b) if isinstance(a, torch.Tensor) else bool(np.array_equal(a, b)) \
            if isinstance(a, np.ndarray) else a == b
    return [key for key in before if not equal(before[key], after[key])]


@pytest.mark.parametrize("precision", ["32-true", "64-true"])
def test_train_leaves_the_callers_process_as_it_found_it(precision, tmp_path):
    """The global generators (torch, CUDA's queued seeds, numpy, Python), the default dtype, threads, gradient
    mode, flags and process-group environment are the caller's again after train() (issue 10 §4)."""
    import random

    import numpy as np

    torch.manual_seed(1234)
    random.seed(5)
    np.random.seed(6)
    before = _process_state()
    train(small_config(**{"train.epochs": 2, "train.precision": precision}), tmp_path / "run")
    assert _same(before, _process_state()) == []
    expected = torch.rand(3)                                  # the caller's stream goes on where it was
    torch.manual_seed(1234)
    assert torch.equal(torch.rand(3), expected)


def test_a_failing_run_restores_the_callers_generators_too(tmp_path):
    config = small_config()
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    model.register_forward_pre_hook(lambda module, inputs: (inputs[0] * float("nan"), *inputs[1:]))
    torch.manual_seed(99)
    before = _process_state()
    with pytest.raises(TrainingDiverged):
        Trainer(config, tmp_path / "run", data=data, model=model).fit()
    assert _same(before, _process_state()) == []


def test_cublas_workspace_config_is_set_for_a_cuda_run_only(monkeypatch):
    monkeypatch.delenv(CUBLAS_WORKSPACE_CONFIG, raising=False)
    with deterministic_algorithms("cpu"):
        assert CUBLAS_WORKSPACE_CONFIG not in os.environ
    with deterministic_algorithms(torch.device("cuda", 0)):          # no GPU needed: nothing runs on it
        assert os.environ[CUBLAS_WORKSPACE_CONFIG] == ":4096:8"
    assert CUBLAS_WORKSPACE_CONFIG not in os.environ
    monkeypatch.setenv(CUBLAS_WORKSPACE_CONFIG, ":16:8")             # the caller's own choice stays
    with deterministic_algorithms("cuda"):
        assert os.environ[CUBLAS_WORKSPACE_CONFIG] == ":16:8"
    assert os.environ[CUBLAS_WORKSPACE_CONFIG] == ":16:8"


def test_batched_training_restores_the_setting_too(tmp_path, restore_determinism):
    from collapsekit.experiments import train_batched

    torch.use_deterministic_algorithms(False)
    configs = [small_config(**{"train.epochs": 1, "objective.beta": beta, "model.arch": "linear"})
               for beta in (0.5, 2.0)]
    train_batched(configs, [tmp_path / "a", tmp_path / "b"])
    assert determinism() == (False, False)


# -- progress ---------------------------------------------------------------------------------------------
class _Terminal(__import__("io").StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_the_epoch_and_reads_nothing_from_the_device(tmp_path, monkeypatch):
    """On a terminal: a bar showing the epoch and the last epoch's terms, with no host read in the step loop."""
    screen = _Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    monkeypatch.setenv("COLUMNS", "120")
    config = small_config(**{"data.spec": "gaussian:d=6,decay=0.6,n=256,seed=3", "train.batch_size": 16,
                             "train.epochs": 2, "train.progress": True})
    in_loop, _ = host_reads_per_epoch(config, tmp_path / "run", monkeypatch)
    assert in_loop == [0, 0]
    shown = screen.getvalue()
    assert "epoch 2/2" in shown and "loss " in shown and " nats" in shown and "/3 active" in shown


def test_off_a_terminal_progress_is_one_line_per_epoch(tmp_path, capsys):
    train(small_config(**{"train.epochs": 2, "train.progress": True}), tmp_path / "run")
    lines = capsys.readouterr().err.splitlines()
    records = metrics(tmp_path / "run")
    for record in records:
        active = record["n_active"][-1]             # the headline rule, on the epoch's batches
        assert active == 3 - len(record["collapsed_dims"][-1])
        assert (f"epoch {record['epoch']}/2: loss {record['loss']:.4g}, reconstruction {record['reconstruction']:.4g}, "
                f"KL {record['kl']:.4g} nats; {active} of 3 dimensions active on the epoch's batches") in lines
