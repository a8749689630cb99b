"""The trainer: exact resume after a kill, NaN stop with the last good checkpoint, DDP on CPU,
run-directory contents, configuration errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from collapsekit.errors import ParameterError
from collapsekit.training import RunConfig, Trainer, TrainingDiverged, train
from collapsekit.training.checkpoint import latest_checkpoint

SMALL = {"data": {"spec": "gaussian:d=6,decay=0.6,n=256,seed=3"},
         "model": {"kind": "vae", "arch": "mlp", "latent_dims": [3], "hidden": [16]},
         "train": {"epochs": 4, "batch_size": 64, "seed": 5, "progress": False}}


def small_config(**overrides) -> RunConfig:
    return RunConfig.parse(SMALL).with_overrides(overrides)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run_dir / "checkpoints") / "model.safetensors")


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_run_directory_holds_config_metrics_and_checkpoint(tmp_path):
    config = small_config()
    result = train(config, tmp_path / "run")
    assert RunConfig.load(tmp_path / "run" / "config.yaml") == config
    records = metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert r["examples"] == 256
        assert r["loss"] == pytest.approx(r["reconstruction"] + 1.0 * r["kl"], rel=1e-6)   # β = 1
        assert sum(r["kl_per_dim"][0]) == pytest.approx(r["kl"], rel=1e-6)
    trained = {k: v for k, v in result.model.state_dict().items()}
    saved = final_weights(tmp_path / "run")
    assert all(torch.equal(trained[k], saved[k]) for k in saved)


def test_existing_run_is_not_overwritten(tmp_path):
    train(small_config(**{"train.epochs": 1}), tmp_path / "run")
    with pytest.raises(ParameterError, match="--resume"):
        train(small_config(**{"train.epochs": 1}), tmp_path / "run")


def test_resume_after_crash_mid_epoch_matches_uninterrupted_run(tmp_path):
    config = small_config()
    reference = train(config, tmp_path / "reference")

    calls = {"n": 0}
    steps_per_epoch = 4

    class Crash(Exception):
        pass

    def crash_in_third_epoch(module, inputs):
        calls["n"] += 1
        if calls["n"] == 2 * steps_per_epoch + 2:
            raise Crash

    from collapsekit.training.trainer import build_model_from_config, load_training_data

    torch.manual_seed(config.train.seed)
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    handle = model.register_forward_pre_hook(crash_in_third_epoch)
    with pytest.raises(Crash):
        Trainer(config, tmp_path / "crashed", data=data, model=model).fit()
    handle.remove()
    assert [r["epoch"] for r in metrics(tmp_path / "crashed")] == [1, 2]

    resumed = train(config, tmp_path / "crashed", resume=True)
    assert resumed.resumed_from == 2
    assert without_time(metrics(tmp_path / "crashed")) == without_time(metrics(tmp_path / "reference"))
    expected, got = final_weights(tmp_path / "reference"), final_weights(tmp_path / "crashed")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert without_time(resumed.metrics) == without_time(reference.metrics)


def test_killed_cli_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a real `collapsekit train` process after two epochs, then rerun it with --resume."""
    args = [sys.executable, "-m", "collapsekit", "train", "--data", "gaussian:d=8,decay=0.7,n=2048,seed=1",
            "--model", "vae", "--arch", "mlp", "--latent-dims", "4", "--hidden", "64", "--epochs", "12",
            "--batch-size", "32", "--seed", "2", "--no-progress"]
    subprocess.run([*args, "--out", str(tmp_path / "reference")], check=True, capture_output=True)
    process = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(log.read_text().splitlines())
    assert 2 <= done < 12, "the kill should land mid-run"
    finished = subprocess.run([*args, "--out", str(tmp_path / "killed"), "--resume"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert without_time(metrics(tmp_path / "killed")) == without_time(metrics(tmp_path / "reference"))
    expected, got = final_weights(tmp_path / "reference"), final_weights(tmp_path / "killed")
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    config = small_config()
    from collapsekit.training.trainer import build_model_from_config, load_training_data

    torch.manual_seed(config.train.seed)
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    calls = {"n": 0}

    def poison_in_third_epoch(module, inputs):
        calls["n"] += 1
        if calls["n"] > 2 * 4:
            x, *rest = inputs
            return (x * float("nan"), *rest)
        return None

    model.register_forward_pre_hook(poison_in_third_epoch)
    with pytest.raises(TrainingDiverged, match="epoch 3") as caught:
        Trainer(config, tmp_path / "run", data=data, model=model).fit()
    assert "epoch 2" in str(caught.value)
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "epoch-000002"
    weights = final_weights(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert [r["epoch"] for r in metrics(tmp_path / "run")] == [1, 2]


def test_warmup_longer_than_run_is_reported_before_training(tmp_path):
    config = small_config(**{"schedule.name": "linear", "schedule.settings": {"warmup_steps": 10_000}})
    with pytest.raises(ParameterError, match="longer than the run"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_ddp_two_cpu_processes_keep_identical_weights_and_reduce_metrics(tmp_path):
    config = small_config(**{"train.strategy": "ddp_spawn", "train.devices": 2, "train.epochs": 2})
    result = train(config, tmp_path / "run")
    assert result.extras["rank_weight_mismatch"] == 0.0
    # each rank sees half of the 256 examples; the logged metrics cover both halves
    assert [r["examples"] for r in metrics(tmp_path / "run")] == [256, 256]


def test_the_papers_architecture_options_are_configuration_keys(tmp_path):
    """Mean and output squashing (the paper's tanh MHVAE, its ReLU VAE), conv channels, the starting encoder
    std and data-dependent hierarchy stds reach the model from the config, and from the CLI."""
    from collapsekit.cli import build_parser
    from collapsekit.diagnostics.theory_compare import TheorySetting, unsupported_reason
    from collapsekit.training.trainer import build_model_from_config, load_training_data

    def model_for(**model):
        config = RunConfig.parse({"data": {"spec": "digits"}, "model": model})
        return config, build_model_from_config(config, load_training_data(config))

    torch.manual_seed(0)
    config, hvae = model_for(kind="hvae", arch="mlp", latent_dims=[6, 4], hidden=[32], mean_activation="tanh",
                             out_activation="tanh", sigma2="data")
    x = load_training_data(config).x[:64] * 50           # large inputs: unsquashed means would leave (−1, 1)
    out = hvae(x)
    for level in out.levels:                             # tanh saturates to ±1 in float32
        assert level.posterior.loc.abs().max() <= 1 and "Tanh" in type(level.posterior.loc.grad_fn).__name__
    assert out.likelihood.mean.abs().max() <= 1
    top_scale = out.levels[-1].posterior.scale
    assert top_scale.shape[-2] == 64 and float(top_scale.std(dim=-2).max()) > 0   # a std per example
    assert unsupported_reason(TheorySetting.from_config(config)) is None           # data σ₂: the learnable-Σ₂ form

    _, relu_vae = model_for(kind="vae", arch="mlp", hidden=[32], mean_activation="relu", encoder_std="learnable",
                            init_std=0.5)
    out = relu_vae(x)
    assert float(out.levels[0].posterior.loc.min()) >= 0
    torch.testing.assert_close(out.levels[0].posterior.scale.detach().expand(64, 16), torch.full((64, 16), 0.5))

    _, conv = model_for(kind="vae", arch="conv", latent_dims=[4], channels=[8, 4])
    assert [m.out_channels for m in conv.encoder.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 4]

    learnable_sigma1 = RunConfig.parse({"model": {"kind": "hvae", "latent_dims": [4, 2], "sigma1": "learnable"}})
    assert "fixed σ₁" in unsupported_reason(TheorySetting.from_config(learnable_sigma1))

    args = build_parser().parse_args(["train", "--model", "hvae", "--latent-dims", "6,4", "--mean-activation", "tanh",
                                      "--out-activation", "tanh", "--channels", "64,32", "--init-std", "0.5",
                                      "--sigma2", "data", "--out", str(tmp_path)])
    keys = ("mean_activation", "out_activation", "channels", "init_std", "sigma2")
    assert [getattr(args, f"model__{key}") for key in keys] == ["tanh", "tanh", [64, 32], 0.5, "data"]
    with pytest.raises(ParameterError, match="channels"):
        RunConfig.parse({"model": {"channels": [8]}})
