"""What would break on a GPU, checked on the CPU: the optimiser state restored after Fabric's set-up (a
`64-true` kill → resume round trip), and deterministic mode set for the run only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from collapsekit.errors import ParameterError
from collapsekit.training import RunConfig, Trainer, TrainingDiverged, train
from collapsekit.training import trainer as trainer_module
from collapsekit.training.checkpoint import latest_checkpoint
from collapsekit.training.trainer import (CUBLAS_WORKSPACE_CONFIG, build_model_from_config, deterministic_algorithms,
                                          load_training_data)

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
