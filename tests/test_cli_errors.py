"""Planted bad input: each gives ONE line on stderr and exit status 2, never a traceback, and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from collapsekit.cli import main

TINY_DATA = "gaussian:eigs=4:1:0.25,n=64,exact=1"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def refused(capsys, *argv: str) -> str:
    """Run ``argv``; assert exit status 2 and one line on stderr without a traceback; return that line."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:                 # argparse's usage errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A two-epoch linear VAE run to diagnose."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    status = main(["train", "--arch", "linear", "--latent-dims", "2", "--data", TINY_DATA, "--epochs", "2",
                   "--batch-size", "32", "--out", str(run_dir), "--no-progress", "--no-monitor"])
    assert status == 0
    return run_dir


# -- 1. an --out that cannot be written --------------------------------------------------------------
def _unwritable(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name → (path, the phrase the refusal must hold)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n")
    return {"under a file": (str(blocker / "out"), f"{blocker} is a file, not a directory"),
            "a file": (str(blocker), "it is a file, not a directory"),
            "proc": ("/proc/collapsekit-x", "nothing can be created in /proc")}


@pytest.mark.parametrize("where", ["under a file", "a file", "proc"])
@pytest.mark.parametrize("argv", [
    ["train", "--data", TINY_DATA, "--epochs", "1", "--no-progress", "--out", "{out}"],
    ["demo", "--out", "{out}"],
    ["sweep", "{config}", "--grid", "beta=1,2", "--out", "{out}", "--no-progress"],
    ["reproduce", "theorem2", "--out", "{out}", "--no-progress"],
])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, where, argv):
    path, phrase = _unwritable(tmp_path)[where]
    config = tmp_path / "base.yaml"
    config.write_text(f"data:\n  spec: '{TINY_DATA}'\ntrain:\n  epochs: 1\n")
    before = listing(tmp_path)
    line = refused(capsys, *[a.format(out=path, config=config) for a in argv])
    assert path in line and phrase in line and "--out" in line
    assert listing(tmp_path) == before and (tmp_path / "a-file").read_text() == "keep me\n"


@pytest.mark.parametrize("flag", ["--plot", "--save"])
@pytest.mark.parametrize("where", ["under a file", "proc"])
def test_predict_plot_and_save_that_cannot_be_written(tmp_path, capsys, flag, where):
    path, phrase = _unwritable(tmp_path)[where]
    line = refused(capsys, "predict", "vae", "--latent-dim", "2", flag, path)
    assert line.startswith(f"collapsekit: error: {flag} {path}: cannot be written") and phrase in line
    line = refused(capsys, "predict", "vae", "--latent-dim", "2", flag, str(tmp_path))   # a directory
    assert "it is a directory, not a file" in line


def test_reproduce_report_that_cannot_be_written(tmp_path, capsys):
    path, phrase = _unwritable(tmp_path)["under a file"]
    line = refused(capsys, "reproduce", "theorem2", "--out", str(tmp_path / "r"), "--report", path + ".md")
    assert "--report" in line and phrase in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["under a file", "a file", "proc"])
def test_diagnose_out_that_cannot_be_written(tiny_run, tmp_path, capsys, where):
    path, phrase = _unwritable(tmp_path)[where]
    before = listing(tiny_run)
    line = refused(capsys, "diagnose", str(tiny_run), "--out", path, "--samples", "2")
    assert path in line and phrase in line
    assert listing(tiny_run) == before


# -- 2. values that are no values ------------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["verify", "vae", "--rtol", "-1"], "'-1' must be > 0"),
    (["verify", "vae", "--rtol", "0"], "'0' must be > 0"),
    (["predict", "vae", "--beta", "0.5,,1"], "empty item (item 2 of 3)"),
    (["verify", "vae", "--beta", "0.5,"], "empty item (item 2 of 2)"),
    (["predict", "hvae", "--latent-dims", "2,,2"], "empty item"),
    (["train", "--out", "x", "--beta", "1,,2"], "empty item"),
    (["predict", "vae", "--beta", "abc"], "not a number"),
])
def test_bad_values_are_one_line(capsys, argv, fragment):
    assert fragment in refused(capsys, *argv)


def test_argparse_errors_are_one_line_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "collapsekit", "verify", "vae", "--beta", "0.5,,1"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "empty item" in result.stderr and "collapsekit verify --help" in result.stderr


@pytest.mark.parametrize("argv", [["predict", "vae", "--beta", "0"], ["predict", "cvae", "--split", "quadrants",
                                                                         "--beta", "0.1,0"],
                                  ["predict", "hvae", "--beta", "0,1"], ["verify", "vae", "--beta", "0"]])
def test_predict_and_verify_refuse_beta_zero_saying_why(capsys, argv):
    line = refused(capsys, *argv)
    assert "must be > 0" in line and "plain autoencoder" in line and "KL is unbounded" in line


def test_a_1d_npy_is_refused_suggesting_the_reshape(tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.arange(50.0))
    line = refused(capsys, "predict", "vae", "--data", str(tmp_path / "v.npy"), "--latent-dim", "1")
    assert "1-D array of 50 values" in line and "x.reshape(-1, 1)" in line and "x.reshape(1, -1)" in line


def test_a_directory_as_data_says_so_and_suggests_mnist_for_idx_files(tmp_path, capsys):
    line = refused(capsys, "predict", "vae", "--data", str(tmp_path))
    assert f"{tmp_path}' is a directory" in line and "unknown data spec" not in line
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    line = refused(capsys, "train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress")
    assert "is a directory" in line and f"use --data mnist:{tmp_path}" in line
    assert not (tmp_path / "run").exists()


def test_terminal_markup_in_a_file_name_is_printed_literally(tmp_path, capsys):
    """`[bold]x.npy` is a name, not markup: every verb prints it as typed (rich markup escaped)."""
    data = tmp_path / "[bold]x.npy"
    np.save(data, np.random.default_rng(0).standard_normal((40, 3)) * [3.0, 1.0, 0.3])
    plot, saved = tmp_path / "[red]p.png", tmp_path / "[i]p.json"
    status, out, err = run(capsys, "predict", "vae", "--data", str(data), "--latent-dim", "2", "--beta", "0.1",
                           "--plot", str(plot), "--save", str(saved))
    assert status == 0, err
    flat = " ".join(out.split())
    assert "data: [bold]x (40 examples)" in flat and str(plot) in flat and str(saved) in flat
    run_dir = tmp_path / "[blue]run"
    status, out, err = run(capsys, "train", "--data", str(data), "--arch", "linear", "--latent-dims", "2",
                           "--epochs", "1", "--out", str(run_dir), "--no-progress", "--no-monitor")
    assert status == 0, err
    assert str(run_dir) in "".join(out.split("\n"))
    status, out, err = run(capsys, "diagnose", str(run_dir), "--samples", "2")
    assert status == 0, err
    assert str(run_dir / "diagnosis" / "report.json") in "".join(out.split("\n"))


def test_train_beta_zero_says_the_theory_does_not_apply_at_the_start_and_in_the_summary(tmp_path, capsys):
    run_dir = tmp_path / "run"
    status, out, err = run(capsys, "train", "--arch", "linear", "--latent-dims", "2", "--data", TINY_DATA,
                           "--beta", "0", "--epochs", "2", "--batch-size", "32", "--out", str(run_dir),
                           "--no-progress")
    assert status == 0, err
    notes = [line for line in err.splitlines() if line.startswith("collapsekit: note: β = 0")]
    assert len(notes) == 1 and "plain autoencoder" in notes[0] and "does not apply" in notes[0]
    assert "plain autoencoder" in " ".join(out.split()) and "does not apply" in " ".join(out.split())
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert any("plain autoencoder" in note for note in evaluation["notes"])
    status, out, err = run(capsys, "diagnose", str(run_dir), "--samples", "2", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert any("β = 0" in note for note in report["notes"]) and all(level["theory"] is None
                                                                    for level in report["levels"])
    assert all("lower β" not in item["prescription"] for item in report["explanations"])


# -- 5. help and configuration errors ----------------------------------------------------------------------
def test_train_help_shows_every_flags_default_from_the_typed_configuration(capsys):
    from collapsekit.cli.train import TRAIN_FLAGS
    from collapsekit.training import RunConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = RunConfig().model_dump(by_alias=True, mode="json")
    for flag, key, _ in TRAIN_FLAGS:
        section, _, name = key.partition(".")
        value = defaults[section][name]
        if isinstance(value, bool) or value is None:
            shown = {True: "true", False: "false", None: "none"}[value]
        elif isinstance(value, (list, dict)):
            shown = ",".join(map(str, value)) or "none"
        else:
            shown = str(value)
        assert f"[{key}, default {shown}" in text, (flag, key, shown)


def test_demo_help_says_it_also_trains_and_diagnoses(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "train" in text and "diagnose" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    listing_ = " ".join(capsys.readouterr().out.split())
    assert "train that CVAE and diagnose it" in listing_


def test_config_errors_list_every_problem_and_suggest_the_nearest_key(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("modle:\n  kind: vae\nmodel:\n  latnt_dims: [2]\nobjective:\n  beta: -1\ntrain:\n  epochs: 0\n")
    line = refused(capsys, "train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress")
    assert "4 problems" in line and "more problems" not in line
    assert "modle: unknown section (did you mean model?)" in line
    assert "model.latnt_dims: unknown key (did you mean model.latent_dims?)" in line
    assert "objective.beta" in line and "train.epochs" in line
    assert not (tmp_path / "run").exists()
    from collapsekit.errors import ParameterError
    from collapsekit.training import RunConfig

    with pytest.raises(ParameterError, match=r"optim\.weight_decy: unknown key \(did you mean optim\.weight_decay\?\)"):
        RunConfig().with_overrides({"optim.weight_decy": 0.1})
    with pytest.raises(ParameterError, match=r"did you mean objective\.beta"):
        RunConfig().with_overrides({"objectiv.beta": 0.1})
    line = refused(capsys, "train", "--config", str(tmp_path), "--out", str(tmp_path / "run"))
    assert "is a directory, not a configuration file" in line


# -- 3. progress on long work -----------------------------------------------------------------------------------
def test_diagnose_and_verify_show_a_few_progress_lines_off_a_terminal(tiny_run, tmp_path, capsys, monkeypatch):
    """Off a terminal, long work prints a few lines per stage (at quarters), never one per batch."""
    import collapsekit._progress as progress

    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)             # as if every stage ran long
    status, _, err = run(capsys, "diagnose", str(tiny_run), "--out", str(tmp_path / "d"), "--samples", "4",
                         "--batch-size", "4")                        # 64 examples: 16 batches per pass
    assert status == 0, err
    lines = [line for line in err.splitlines() if line.startswith("diagnose: ")]
    for stage in ("posterior pass", "metrics", "log-likelihood, 4 importance samples", "reports"):
        mine = [line for line in lines if line.startswith(f"diagnose: {stage}")]
        assert 1 <= len(mine) <= len(progress.LINE_FRACTIONS), (stage, lines)
    assert any("64/64 (100%" in line for line in lines)
    status, _, err = run(capsys, "diagnose", str(tiny_run), "--out", str(tmp_path / "d"), "--samples", "4",
                         "--no-progress")
    assert status == 0 and "diagnose: " not in err
    status, _, err = run(capsys, "verify", "vae", "--data", TINY_DATA, "--latent-dim", "2", "--beta", "0.5,1",
                         "--starts", "4", "--json")
    assert status == 0
    lines = [line for line in err.splitlines() if line.startswith("verify: L-BFGS starts")]
    assert 1 <= len(lines) <= 4 and lines[-1].startswith("verify: L-BFGS starts: 8/8 (100%")
    monkeypatch.setattr(progress, "QUIET_SECONDS", 3600.0)          # quick work stays quiet
    status, _, err = run(capsys, "verify", "vae", "--data", TINY_DATA, "--latent-dim", "2", "--starts", "2")
    assert status == 0 and err == ""
