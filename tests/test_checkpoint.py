"""Checkpoints: checksums catch planted corruption (one typed line naming the checkpoint), checkpoints
without checksums are still checked as they are parsed, weights that do not fit the model are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from collapsekit.cli import main
from collapsekit.training import CorruptCheckpointError, RunConfig, Trainer, train
from collapsekit.training.checkpoint import (CHECKSUM_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, latest_checkpoint,
                                             load_checkpoint)

SMALL = {"data": {"spec": "gaussian:d=6,decay=0.6,n=256,seed=3"},
         "model": {"kind": "vae", "arch": "mlp", "latent_dims": [3], "hidden": [16]},
         "train": {"epochs": 4, "batch_size": 64, "seed": 5, "progress": False}}
FLAGS = ["--data", "gaussian:d=6,decay=0.6,n=256,seed=3", "--model", "vae", "--arch", "mlp", "--latent-dims", "3",
         "--hidden", "16", "--batch-size", "64", "--seed", "5", "--no-progress"]


def small_config(**overrides) -> RunConfig:
    return RunConfig.parse(SMALL).with_overrides(overrides)


def epochs_on_disk(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("epoch-"))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run_dir / "checkpoints") / MODEL_FILE)


def assert_same_run(got: Path, want: Path) -> None:
    assert without_time(metrics(got)) == without_time(metrics(want))
    expected, weights = final_weights(want), final_weights(got)
    assert expected.keys() == weights.keys() and all(torch.equal(expected[k], weights[k]) for k in expected)


def crash_in_epoch(config: RunConfig, run_dir: Path, epoch: int, steps_per_epoch: int = 4) -> None:
    """Train until the second step of ``epoch``, then raise (as a kill would stop it)."""
    from collapsekit.training.trainer import build_model_from_config, load_training_data

    class Crash(Exception):
        pass

    calls = {"n": 0}

    def crash(module, inputs):
        calls["n"] += 1
        if calls["n"] == (epoch - 1) * steps_per_epoch + 2:
            raise Crash

    torch.manual_seed(config.train.seed)
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    model.register_forward_pre_hook(crash)
    with pytest.raises(Crash):
        Trainer(config, run_dir, data=data, model=model).fit()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 4-epoch run: checkpoints of epochs 3 and 4 (the default keeps 2)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train(small_config(), run_dir)
    return run_dir


@pytest.fixture()
def run(finished, tmp_path) -> Path:
    """A copy of the finished run to damage."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


# -- planted corruption ----------------------------------------------------------------------------
def tensor_data_offset(data: bytes) -> int:
    """Where a safetensors file's tensor bytes start (after its 8-byte length and JSON header)."""
    return 8 + int.from_bytes(data[:8], "little")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = b"\xff" * 16                                 # the header's length and its first bytes
    path.write_bytes(bytes(data))


def overwrite_tensor_bytes(path: Path) -> None:
    """Finite float32 values over the first tensor's bytes; the header stays intact and parses."""
    data = bytearray(path.read_bytes())
    start = tensor_data_offset(bytes(data))
    data[start:start + 64] = torch.full((16,), 0.25).numpy().tobytes()
    path.write_bytes(bytes(data))


DAMAGE = {
    "model truncated": (MODEL_FILE, truncate, f"{MODEL_FILE} does not match its checksum"),
    "model garbled": (MODEL_FILE, garble, f"{MODEL_FILE} does not match its checksum"),
    "model tensor bytes overwritten": (MODEL_FILE, overwrite_tensor_bytes, f"{MODEL_FILE} does not match its checksum"),
    "optimizer truncated": (OPTIMIZER_FILE, truncate, f"{OPTIMIZER_FILE} does not match its checksum"),
    "state.json empty": (STATE_FILE, lambda p: p.write_text(""), f"{STATE_FILE} does not match its checksum"),
    "state.json invalid": (STATE_FILE, lambda p: p.write_text("{\"epoch\": 4,"), f"{STATE_FILE} does not match"),
    "model missing": (MODEL_FILE, lambda p: p.unlink(), f"{MODEL_FILE} is missing"),
    "checksums garbled": (CHECKSUM_FILE, lambda p: p.write_text("[1, 2"), f"{CHECKSUM_FILE} is not a valid checksum"),
}


def test_a_healthy_checkpoint_carries_checksums_and_loads(finished):
    newest = latest_checkpoint(finished / "checkpoints")
    assert newest.name == "epoch-000004" and epochs_on_disk(finished) == ["epoch-000003", "epoch-000004"]
    recorded = json.loads((newest / CHECKSUM_FILE).read_text())
    assert recorded["algorithm"] == "sha256" and set(recorded["files"]) == {MODEL_FILE, OPTIMIZER_FILE, STATE_FILE}
    checkpoint = load_checkpoint(newest)
    assert checkpoint.epoch == 4 and checkpoint.state["step"] == 16
    assert all(torch.equal(checkpoint.model[k], v) for k, v in load_file(newest / MODEL_FILE).items())


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_planted_corruption_is_caught_by_the_checksum(run, damage):
    name, plant, reason = DAMAGE[damage]
    newest = run / "checkpoints" / "epoch-000004"
    plant(newest / name)
    with pytest.raises(CorruptCheckpointError) as caught:
        load_checkpoint(newest)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {newest} is corrupt: ") and reason in message and "\n" not in message
    assert caught.value.path == newest
    load_checkpoint(run / "checkpoints" / "epoch-000003")     # the previous one is untouched


LEGACY_DAMAGE = {
    "model truncated": (MODEL_FILE, truncate, f"{MODEL_FILE} cannot be read"),
    "model garbled": (MODEL_FILE, garble, f"{MODEL_FILE} cannot be read"),
    "state.json empty": (STATE_FILE, lambda p: p.write_text(""), f"{STATE_FILE} is empty"),
    "state.json invalid": (STATE_FILE, lambda p: p.write_text("{\"epoch\": 4,"), f"{STATE_FILE} is not valid JSON"),
    "state.json without epoch": (STATE_FILE, lambda p: p.write_text("{}"), "lacks the epoch"),
    "model tensor bytes NaN": (MODEL_FILE, lambda p: _nan_tensor_bytes(p), "non-finite values"),
}


def _nan_tensor_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = tensor_data_offset(bytes(data))
    data[start:start + 64] = torch.full((16,), float("nan")).numpy().tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", sorted(LEGACY_DAMAGE))
def test_a_checkpoint_without_checksums_is_still_checked_as_it_is_parsed(run, damage):
    """Checkpoints of the previous format have no checksums.json: what parsing can see is still caught."""
    name, plant, reason = LEGACY_DAMAGE[damage]
    newest = run / "checkpoints" / "epoch-000004"
    (newest / CHECKSUM_FILE).unlink()
    load_checkpoint(newest)                                   # intact, it loads without checksums
    plant(newest / name)
    with pytest.raises(CorruptCheckpointError, match=f"^checkpoint {newest} is corrupt: .*{reason}"):
        load_checkpoint(newest)


def test_overwritten_tensor_bytes_are_caught_by_the_checksum_not_by_training(run):
    """Finite garbage under an intact header parses, so only the checksum can tell; with it, the resume
    does not train on it (and falls back to the intact checkpoint before, saying so)."""
    newest = run / "checkpoints" / "epoch-000004"
    overwrite_tensor_bytes(newest / MODEL_FILE)
    shutil.copytree(newest, run / "no-checksum")
    (run / "no-checksum" / CHECKSUM_FILE).unlink()
    assert load_checkpoint(run / "no-checksum").epoch == 4    # what a checkpoint without checksums would let through
    with pytest.raises(CorruptCheckpointError, match="does not match its checksum"):
        load_checkpoint(newest)


def test_weights_that_do_not_fit_the_model_are_a_corrupt_checkpoint(run):
    from collapsekit.training.trainer import build_model_from_config, load_training_data

    config = small_config(**{"model.hidden": [32]})
    model = build_model_from_config(config, load_training_data(config))
    checkpoint = load_checkpoint(run / "checkpoints" / "epoch-000004")
    with pytest.raises(CorruptCheckpointError, match=r"is corrupt: its weights do not fit the model .*shape") as caught:
        checkpoint.restore_model(model)
    assert "\n" not in str(caught.value)


def plant_foreign_weights(run_dir: Path) -> Path:
    """Replace the newest checkpoint's weights by a wider model's, with a valid checksum (a checkpoint
    copied from another run)."""
    from collapsekit.training.checkpoint import checkpoint_files
    from collapsekit.training.trainer import build_model_from_config, load_training_data

    config = small_config(**{"model.hidden": [32]})
    other = build_model_from_config(config, load_training_data(config))
    newest = latest_checkpoint(run_dir / "checkpoints")
    loaded = load_checkpoint(newest)
    state = {k: v for k, v in loaded.state.items() if k != "epoch"}
    for name, data in checkpoint_files(epoch=loaded.epoch, model=other.state_dict(), optimizer=loaded.optimizer,
                                       state=state).items():
        (newest / name).write_bytes(data)
    return newest


# -- what each command says about a corrupt checkpoint ---------------------------------------------------
def one_line_error(status: int, err: str) -> str:
    assert status == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


def test_diagnose_names_a_corrupt_checkpoint_in_one_line(run, capsys):
    truncate(run / "checkpoints" / "epoch-000004" / MODEL_FILE)
    status = main(["diagnose", str(run), "--no-theory", "--samples", "2"])
    line = one_line_error(status, capsys.readouterr().err)
    assert f"checkpoint {run / 'checkpoints' / 'epoch-000004'} is corrupt" in line


def test_diagnose_names_weights_that_do_not_fit_the_run(run, capsys):
    newest = plant_foreign_weights(run)
    status = main(["diagnose", str(run), "--no-theory", "--samples", "2"])
    line = one_line_error(status, capsys.readouterr().err)
    assert f"checkpoint {newest} is corrupt: its weights do not fit" in line
