"""Checkpoints and run directories: checksums catch planted corruption (for `diagnose`, `train --resume`
and sweep reruns, each with one typed line naming the checkpoint), the last K are kept and one is
written every N epochs, a corrupt newest checkpoint falls back to the previous one, checkpoints of
the previous format still resume exactly, the run directory is locked, a sweep directory is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from collapsekit._io import exclusive_directory
from collapsekit.cli import main
from collapsekit.errors import ParameterError
from collapsekit.training import CheckpointWarning, CorruptCheckpointError, RunConfig, Trainer, TrainingDiverged, train
from collapsekit.training import trainer as trainer_module
from collapsekit.training.checkpoint import (CHECKSUM_FILE, LATEST, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE,
                                             _optimizer_state_for_json, latest_checkpoint, load_checkpoint)

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


def diagnose_json(capsys, *argv: str) -> tuple[int, dict | None, str]:
    """`collapsekit diagnose ARGV --json`: (status, the report or None, stderr)."""
    status = main(["diagnose", *argv, "--no-theory", "--samples", "2", "--no-progress", "--json"])
    captured = capsys.readouterr()
    return status, (json.loads(captured.out) if status == 0 else None), captured.err


def test_diagnose_passes_over_a_corrupt_newest_checkpoint_to_the_previous_one_saying_so(run, capsys, tmp_path):
    checkpoints = run / "checkpoints"
    status, expected, _ = diagnose_json(capsys, str(checkpoints / "epoch-000003"), "--out", str(tmp_path / "want"))
    assert status == 0
    truncate(checkpoints / "epoch-000004" / MODEL_FILE)
    status, report, err = diagnose_json(capsys, str(run))
    assert status == 0, err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"collapsekit: warning: checkpoint {checkpoints / 'epoch-000004'} is corrupt: {MODEL_FILE} does not match its "
        f"checksum ({(checkpoints / 'epoch-000004' / MODEL_FILE).stat().st_size:,} bytes; truncated, garbled or "
        f"overwritten); diagnosing the previous intact one, {checkpoints / 'epoch-000003'} (epoch 3)"], err
    assert report["model"]["checkpoint"] == str(checkpoints / "epoch-000003") and report["model"]["epoch"] == 3
    assert [r["epoch"] for r in report["history"]] == [1, 2, 3]
    assert any("epoch-000004, is corrupt: diagnosed the previous intact one" in note for note in report["notes"])
    # the numbers are epoch 3's, measured as if it had been named
    assert [level["kl_per_dim"] for level in report["levels"]] == [level["kl_per_dim"] for level in expected["levels"]]
    assert report["n_active"] == expected["n_active"] and report["elbo"] == expected["elbo"]


def test_diagnose_with_no_intact_checkpoint_fails_in_one_line(run, capsys):
    for name in epochs_on_disk(run):
        truncate(run / "checkpoints" / name / MODEL_FILE)
    status = main(["diagnose", str(run), "--no-theory", "--samples", "2"])
    line = one_line_error(status, capsys.readouterr().err)
    assert f"checkpoint {run / 'checkpoints' / 'epoch-000004'} is corrupt" in line
    assert "no earlier checkpoint is intact either (1 tried)" in line
    assert not (run / "diagnosis").exists() or not any((run / "diagnosis").iterdir())


def test_diagnose_of_a_named_corrupt_checkpoint_does_not_pass_over_it(run, capsys):
    newest = run / "checkpoints" / "epoch-000004"
    truncate(newest / MODEL_FILE)
    status = main(["diagnose", str(newest), "--no-theory", "--samples", "2"])
    line = one_line_error(status, capsys.readouterr().err)
    assert line.startswith(f"collapsekit: error: checkpoint {newest} is corrupt: {MODEL_FILE} does not match")


def test_diagnose_names_weights_that_do_not_fit_the_run(run, capsys):
    newest = plant_foreign_weights(run)
    status = main(["diagnose", str(run), "--no-theory", "--samples", "2"])
    line = one_line_error(status, capsys.readouterr().err)
    assert f"checkpoint {newest} is corrupt: its weights do not fit" in line


def test_train_resume_with_no_intact_checkpoint_names_it_in_one_line(run, capsys):
    for name in epochs_on_disk(run):
        garble(run / "checkpoints" / name / MODEL_FILE)
    status = main(["train", "--out", str(run), "--resume", "--epochs", "6"])
    line = one_line_error(status, capsys.readouterr().err)
    assert f"checkpoint {run / 'checkpoints' / 'epoch-000004'} is corrupt" in line and "no earlier checkpoint" in line


def test_train_resume_with_weights_that_do_not_fit_names_the_checkpoint(run, capsys):
    newest = plant_foreign_weights(run)
    status = main(["train", "--out", str(run), "--resume", "--epochs", "6"])
    assert f"checkpoint {newest} is corrupt: its weights do not fit" in one_line_error(status, capsys.readouterr().err)


def test_a_corrupt_newest_checkpoint_resumes_from_the_previous_one_exactly(tmp_path):
    config = small_config(**{"train.epochs": 6})
    train(config, tmp_path / "reference")
    crash_in_epoch(config, tmp_path / "run", epoch=5)
    assert epochs_on_disk(tmp_path / "run") == ["epoch-000003", "epoch-000004"]
    newest = tmp_path / "run" / "checkpoints" / "epoch-000004"
    overwrite_tensor_bytes(newest / MODEL_FILE)
    with pytest.warns(CheckpointWarning) as warned:
        resumed = train(config, tmp_path / "run", resume=True)
    [warning] = [str(w.message) for w in warned if w.category is CheckpointWarning]
    assert str(newest) in warning and "is corrupt" in warning and "\n" not in warning
    assert f"resuming from the previous intact one, {tmp_path / 'run' / 'checkpoints' / 'epoch-000003'} (epoch 3)" \
        in warning
    assert resumed.resumed_from == 3
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_the_cli_says_in_one_warning_line_which_checkpoint_it_passed_over(run, capsys):
    state = run / "checkpoints" / "epoch-000004" / STATE_FILE
    state.write_text("")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "5"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning: checkpoint" in line]
    assert warnings == [f"collapsekit: warning: checkpoint {state.parent} is corrupt: {STATE_FILE} does not match its "
                        f"checksum (0 bytes; truncated, garbled or overwritten); resuming from the previous intact "
                        f"one, {run / 'checkpoints' / 'epoch-000003'} (epoch 3)"], err
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3, 4, 5]


def test_a_sweep_rerun_records_a_corrupt_checkpoint_as_the_points_failure(tmp_path):
    """A rerun resumes an interrupted point through the trainer (``run_point``, what a sweep's workers run)."""
    from collapsekit.experiments.sweep import PointTask, run_point

    config = small_config(**{"train.keep_checkpoints": 1})
    point = tmp_path / "points" / "beta=1,seed=5"
    crash_in_epoch(config, point, epoch=3)
    garble(point / "checkpoints" / "epoch-000002" / MODEL_FILE)
    task = PointTask("beta=1,seed=5", str(point), config.model_dump(by_alias=True, mode="json"), settings={}, seed=5)
    record = run_point(task)
    assert record["status"] == "failed"
    assert record["error"].startswith(f"CorruptCheckpointError: checkpoint {point / 'checkpoints' / 'epoch-000002'} "
                                      "is corrupt"), record["error"]


def test_a_sweep_rerun_resumes_a_point_from_its_previous_intact_checkpoint(tmp_path):
    from collapsekit.experiments.sweep import PointTask, run_point

    config = small_config()
    train(config, tmp_path / "reference")
    point = tmp_path / "points" / "beta=1,seed=5"
    crash_in_epoch(config, point, epoch=4)
    truncate(point / "checkpoints" / "epoch-000003" / OPTIMIZER_FILE)
    task = PointTask("beta=1,seed=5", str(point), config.model_dump(by_alias=True, mode="json"), settings={}, seed=5)
    record = run_point(task)          # the worker hands its warnings to the sweep, which prints them naming the point
    assert record["status"] == "done" and record["resumed_from"] == 2
    [warning] = [w for w in record["warnings"] if w["category"] == "CheckpointWarning"]
    assert "epoch-000003 is corrupt" in warning["message"] and "resuming from the previous intact one" in \
        warning["message"] and "\n" not in warning["message"]
    assert_same_run(point, tmp_path / "reference")


# -- keep K, every N ---------------------------------------------------------------------------------
def test_checkpoints_every_n_epochs_and_the_last_k_kept(tmp_path):
    config = small_config(**{"train.epochs": 7, "train.checkpoint_every": 2, "train.keep_checkpoints": 3})
    train(config, tmp_path / "run")
    assert epochs_on_disk(tmp_path / "run") == ["epoch-000004", "epoch-000006", "epoch-000007"]   # 7: the last
    assert [r["epoch"] for r in metrics(tmp_path / "run")] == list(range(1, 8))
    assert json.loads((tmp_path / "run" / "checkpoints" / LATEST).read_text())["path"] == "epoch-000007"


def test_a_kill_between_checkpoints_resumes_from_the_last_one_exactly(tmp_path):
    config = small_config(**{"train.epochs": 6, "train.checkpoint_every": 3})
    train(config, tmp_path / "reference")
    crash_in_epoch(config, tmp_path / "run", epoch=5)
    assert epochs_on_disk(tmp_path / "run") == ["epoch-000003"]
    assert [r["epoch"] for r in metrics(tmp_path / "run")] == [1, 2, 3, 4]
    resumed = train(config, tmp_path / "run", resume=True)
    assert resumed.resumed_from == 3
    assert_same_run(tmp_path / "run", tmp_path / "reference")
    assert epochs_on_disk(tmp_path / "run") == ["epoch-000003", "epoch-000006"]


def test_checkpoint_settings_are_flags_and_validated(tmp_path, capsys):
    status = main(["train", *FLAGS, "--epochs", "3", "--checkpoint-every", "2", "--keep-checkpoints", "1",
                   "--out", str(tmp_path / "run")])
    assert status == 0, capsys.readouterr().err
    assert epochs_on_disk(tmp_path / "run") == ["epoch-000003"]
    saved = RunConfig.load(tmp_path / "run" / "config.yaml").train
    assert (saved.checkpoint_every, saved.keep_checkpoints) == (2, 1)
    with pytest.raises(ParameterError, match="keep_checkpoints"):
        small_config(**{"train.keep_checkpoints": 0})
    with pytest.raises(ParameterError, match="checkpoint_every"):
        small_config(**{"train.checkpoint_every": 0})


# -- the previous format ---------------------------------------------------------------------------------
def old_save_checkpoint(directory: Path, *, epoch: int, model: dict, optimizer: dict, state: dict,
                        keep: int = 1) -> Path:
    """save_checkpoint as collapsekit wrote it before checksums (one checkpoint kept, no checksums.json)."""
    from safetensors.torch import save_file

    from collapsekit._io import atomic_path

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"epoch-{epoch:06d}"
    staging = directory / f".staging-epoch-{epoch:06d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.items()}, staging / "model.safetensors")
    optimizer_tensors: dict = {}
    optimizer_tree = _optimizer_state_for_json(optimizer, optimizer_tensors)
    save_file(optimizer_tensors, staging / "optimizer.safetensors")
    (staging / "state.json").write_text(json.dumps({"epoch": epoch, "optimizer": optimizer_tree, **state},
                                                   indent=1, allow_nan=False))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    with atomic_path(directory / "latest.json") as temporary:
        temporary.write_text(json.dumps({"epoch": epoch, "path": final.name}))
    for old in sorted(directory.glob("epoch-*"))[:-1]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def test_a_run_written_the_old_way_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    """No checksums, one checkpoint, a config.yaml without the keys added since: `--resume` still continues it
    exactly, and new checkpoints come with checksums."""
    config = small_config(**{"train.epochs": 5})
    train(config, tmp_path / "reference")
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "save_checkpoint", old_save_checkpoint)
        crash_in_epoch(config, tmp_path / "run", epoch=4)
    run_dir = tmp_path / "run"
    assert epochs_on_disk(run_dir) == ["epoch-000003"]
    assert not (run_dir / "checkpoints" / "epoch-000003" / CHECKSUM_FILE).exists()
    saved = (run_dir / "config.yaml").read_text()
    old = "".join(line for line in saved.splitlines(keepends=True)
                  if not line.strip().startswith(("precision:", "checkpoint_every:", "keep_checkpoints:")))
    assert old != saved
    (run_dir / "config.yaml").write_text(old)
    assert main(["train", "--out", str(run_dir), "--resume"]) == 0, capsys.readouterr().err
    assert_same_run(run_dir, tmp_path / "reference")
    assert epochs_on_disk(run_dir) == ["epoch-000004", "epoch-000005"]
    assert (run_dir / "checkpoints" / "epoch-000005" / CHECKSUM_FILE).is_file()


def test_a_metrics_line_torn_by_a_kill_does_not_stop_the_resume(tmp_path):
    config = small_config()
    train(config, tmp_path / "reference")
    crash_in_epoch(config, tmp_path / "run", epoch=3)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as stream:
        stream.write('{"epoch": 3, "step": 12, "lo')          # the kill landed mid-write
    train(config, tmp_path / "run", resume=True)
    assert_same_run(tmp_path / "run", tmp_path / "reference")


# -- the run directory ---------------------------------------------------------------------------------
def test_a_second_trainer_into_a_locked_run_directory_is_refused_in_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with exclusive_directory(run_dir, "busy"):                # as a first `collapsekit train` holds it
        status = main(["train", *FLAGS, "--epochs", "1", "--out", str(run_dir)])
        line = one_line_error(status, capsys.readouterr().err)
        assert f"{run_dir} is in use: another process is training into it" in line
        with pytest.raises(ParameterError, match="is in use"):
            train(small_config(), run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]    # nothing written
    train(small_config(**{"train.epochs": 1}), run_dir)                 # free again


def test_two_train_processes_into_one_directory(tmp_path):
    """A real second `collapsekit train` while the first one trains: refused, and the first finishes intact."""
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "collapsekit", "train", *FLAGS, "--epochs", "100000", "--out", str(tmp_path / "run")]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") >= 1):
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run([*args[:-2], "--resume", "--out", str(tmp_path / "run")], capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2 and "is in use" in second.stderr and second.stderr.count("\n") == 1, \
            second.stderr
    finally:
        first.kill()
        first.wait()
    records = metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))


def test_a_sweep_directory_is_not_a_run_directory(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text("config: {}\n")
    status = main(["train", *FLAGS, "--epochs", "1", "--out", str(sweep)])
    assert "is a sweep directory" in one_line_error(status, capsys.readouterr().err)
    assert sorted(p.name for p in sweep.iterdir()) == ["sweep.yaml"]


def test_a_loss_that_is_not_finite_in_epoch_1_claims_no_checkpoint(tmp_path):
    from collapsekit.training.trainer import build_model_from_config, load_training_data

    config = small_config()
    torch.manual_seed(config.train.seed)
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    model.register_forward_pre_hook(lambda module, inputs: (inputs[0] * float("nan"), *inputs[1:]))
    with pytest.raises(TrainingDiverged) as caught:
        Trainer(config, tmp_path / "run", data=data, model=model).fit()
    message = str(caught.value)
    assert "during epoch 1" in message and "no checkpoint had been written yet" in message
    assert "epoch 0" not in message and "last good checkpoint" not in message
    assert latest_checkpoint(tmp_path / "run" / "checkpoints") is None
