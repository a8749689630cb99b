"""The command line: outputs agree with the API, bad input exits 2 with one line, files are written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from collapsekit.cli import main
from collapsekit.data import apply_views, load
from collapsekit.theory import Moments, predict_cvae, predict_mhvae, recommend_beta


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_predict_json_matches_api(capsys):
    status, out, _ = run(capsys, "predict", "cvae", "--data", "digits", "--split", "quadrants",
                         "--latent-dim", "8", "--beta", "0.1", "--eta-dec", "0.9", "--json")
    assert status == 0
    got = json.loads(out)
    ds = apply_views(load("digits"), split="quadrants")
    want = predict_cvae(Moments.from_data(ds.x, ds.y), latent_dim=8, beta=0.1, eta_dec=0.9)
    assert got["n_active"] == want.n_active
    np.testing.assert_allclose(got["kl_per_dim"], want.kl_per_dim, rtol=1e-12)
    np.testing.assert_allclose(got["loss"], want.loss, rtol=1e-12)
    assert set(got) >= {"decoder_sv", "encoder_sv", "encoder_std", "collapsed", "kl_per_dim",
                        "critical_beta", "n_active", "spectrum", "loss"}


def test_grid_gives_one_prediction_per_setting_and_collapse_grows_with_beta(capsys):
    status, out, _ = run(capsys, "predict", "cvae", "--split", "quadrants", "--beta", "0.01,0.1,1", "--json")
    assert status == 0
    actives = [p["n_active"] for p in json.loads(out)]
    assert [p for p in actives] == sorted(actives, reverse=True) and actives[0] > actives[-1]


HVAE_GRID = ["--data", "gaussian:eigs=9:4:1:0.25,n=500,exact=1", "--latent-dims", "3,2", "--sigma2", "learnable,0.8",
             "--json"]


def test_hvae_grid_over_two_flags_is_a_product(capsys):
    betas = [arg for b1 in ("0.5", "1") for b2 in ("0.5", "1", "2") for arg in ("--beta", f"{b1},{b2}")]
    status, out, err = run(capsys, "predict", "hvae", *HVAE_GRID, *betas)
    assert status == 0 and err == ""
    preds = json.loads(out)
    assert len(preds) == 2 * 3 * 2
    m = Moments(xx=np.diag([9.0, 4.0, 1.0, 0.25]))
    for p in preds:
        h = p["hyperparameters"]
        want = predict_mhvae(m, (3, 2), beta1=h["beta1"], beta2=h["beta2"], sigma2=h["sigma2"])
        assert p["n_active"] == want.n_active
        np.testing.assert_allclose(p["loss"], want.loss, rtol=1e-9)


def test_deprecated_mhvae_and_level_beta_flags_still_work_with_a_one_line_note(capsys):
    """`predict mhvae --beta1 B1 --beta2 B2` is `predict hvae --beta B1,B2` (train's vocabulary), plus a note."""
    status, old, err = run(capsys, "predict", "mhvae", *HVAE_GRID, "--beta1", "0.5,1", "--beta2", "2")
    assert status == 0
    assert err.startswith("collapsekit: deprecated: 'mhvae' is now 'hvae'; --beta1/--beta2 are now --beta B1,B2")
    assert len(err.strip().splitlines()) == 1
    status, new, err = run(capsys, "predict", "hvae", *HVAE_GRID, "--beta", "0.5,2", "--beta", "1,2")
    assert status == 0 and err == "" and new == old
    status, new, _ = run(capsys, "predict", "hvae", *HVAE_GRID, "--beta", "2")      # one value: both levels
    assert [p["hyperparameters"]["beta1"] for p in json.loads(new)] == [2.0, 2.0]
    assert [p["hyperparameters"]["beta2"] for p in json.loads(new)] == [2.0, 2.0]


def test_table_output_has_verdict_and_recommendation(capsys):
    status, out, _ = run(capsys, "predict", "cvae", "--split", "quadrants", "--latent-dim", "8", "--recommend", "3")
    assert status == 0
    assert "verdict:" in out and "recommendation:" in out
    ds = apply_views(load("digits"), split="quadrants")
    beta = recommend_beta(Moments.from_data(ds.x, ds.y), "cvae", target_active=3, latent_dim=8)
    assert f"< {np.nextafter(beta, np.inf):.6g}" in out


def test_plot_and_saved_json_are_written(tmp_path, capsys):
    target = tmp_path / "sub" / "spectrum.png"
    saved = tmp_path / "sub" / "predictions.json"
    status, out, _ = run(capsys, "predict", "vae", "--beta", "0.01,0.1", "--plot", str(target), "--save", str(saved))
    assert status == 0 and "verdict:" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p["hyperparameters"]["beta"] for p in json.loads(saved.read_text())] == [0.01, 0.1]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.parametrize("argv, fragment", [
    (["predict", "vae", "--beta", "0"], "beta must be"),
    (["predict", "vae", "--eta-dec", "-1"], "eta_dec must be"),
    (["predict", "vae", "--latent-dim", "0"], "latent_dim must be"),
    (["predict", "vae", "--latent-dim", "65"], "larger than the data allows"),
    (["predict", "hvae", "--latent-dims", "4,5"], "larger than the data allows"),
    (["predict", "hvae", "--beta", "1,2,3"], "B1,B2 (one per level)"),
    (["predict", "hvae", "--beta", "1,2", "--beta2", "3"], "--beta B1,B2 only"),
    (["predict", "cvae"], "needs (x, y) pairs"),
    (["predict", "vae", "--split", "quadrants"], "for the CVAE"),
    (["predict", "vae", "--beta2", "2"], "--beta2 does not apply"),
    (["predict", "cvae", "--split", "quadrants", "--latent-dims", "3,3"], "--latent-dims does not apply"),
    (["predict", "vae", "--data", "missing.npy"], "not found"),
    (["predict", "vae", "--data", "nonsense:spec"], "unknown data spec"),
    (["predict", "vae", "--encoder-std", "1,2,3", "--latent-dim", "2"], "encoder_std has 3 values"),
    (["verify", "vae", "--starts", "0"], "--starts must be"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, fragment):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_data_files_exit_2(tmp_path, capsys):
    nan = tmp_path / "nan.npy"
    values = np.ones((10, 3))
    values[6, 1] = np.nan
    np.save(nan, values)
    status, _, err = run(capsys, "predict", "vae", "--data", str(nan), "--latent-dim", "2")
    assert status == 2 and "row 6" in err
    text = tmp_path / "words.csv"
    text.write_text("1,2\n3,abc\n")
    status, _, err = run(capsys, "predict", "vae", "--data", str(text), "--latent-dim", "1")
    assert status == 2 and "abc" in err
    pairs = tmp_path / "pairs.npz"
    np.savez(pairs, x=np.ones((5, 2)), y=np.ones((4, 2)))
    status, _, err = run(capsys, "predict", "cvae", "--data", str(pairs), "--latent-dim", "1")
    assert status == 2 and "5" in err and "4" in err


def test_argparse_errors_exit_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "collapsekit", "predict", "vae", "--beta", "abc"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a number" in result.stderr and "Traceback" not in result.stderr


def test_verify_agrees_and_reports(capsys):
    status, out, _ = run(capsys, "verify", "vae", "--data", "gaussian:eigs=4:1:0.25,n=300,exact=1",
                         "--latent-dim", "2", "--beta", "0.5", "--starts", "2", "--json")
    assert status == 0
    result = json.loads(out)
    assert result["agrees"] and result["relative_gap"] <= 1e-6


def test_demo_writes_plot_and_json(tmp_path, capsys):
    status, out, _ = run(capsys, "demo", "--out", str(tmp_path))
    assert status == 0
    predictions = json.loads((tmp_path / "cvae-digits-beta-grid.json").read_text())
    actives = [p["n_active"] for p in predictions]
    assert actives == sorted(actives, reverse=True) and actives[0] > actives[-1]
    assert (tmp_path / "cvae-digits-beta-grid.png").stat().st_size > 10_000
    assert "verdict:" in out
    # the trained linear CVAE: measured against predicted, from the run it wrote
    assert "KL per dimension" in out and "closed-form optimum" in out
    records = (tmp_path / "cvae-digits-run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 150
    # it ends with the diagnosis of that run, and says where its HTML report is
    html = tmp_path / "diagnosis" / "report.html"
    assert str(html.resolve()) in " ".join(out.split()) or "HTML report:" in out
    assert html.stat().st_size > 50_000 and json.loads((tmp_path / "diagnosis" / "report.json").read_text())["levels"]


def test_train_relu_cvae_on_mnist10k_quadrants(tmp_path, capsys):
    status, out, _ = run(capsys, "train", "--model", "cvae", "--arch", "mlp", "--split", "quadrants",
                         "--latent-dims", "4", "--hidden", "32", "--data", "mnist10k", "--epochs", "1",
                         "--batch-size", "256", "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 0 and "KL per dimension" in out
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["examples"] == 10_000 and len(record["kl_per_dim"][0]) == 4
    # a Gaussian likelihood over 588 pixels with η_dec = 1 costs at least its constant, (588/2)·log 2π nats
    assert record["reconstruction"] > 294 * np.log(2 * np.pi)


def test_train_config_file_and_flags(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  kind: vae\n  arch: linear\n  latent_dims: [2]\ntrain:\n  epochs: 3\n"
                      "data:\n  spec: gaussian:eigs=4:1:0.25,n=200,exact=1\n")
    status, _, _ = run(capsys, "train", "--config", str(config), "--epochs", "2", "--beta", "0.5",
                       "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 0
    from collapsekit.training import RunConfig

    saved = RunConfig.load(tmp_path / "run" / "config.yaml")
    assert saved.train.epochs == 2 and saved.objective.beta == 0.5 and saved.model.arch == "linear"


@pytest.mark.parametrize("argv, fragment", [
    (["--model", "hvae", "--latent-dims", "4"], "model"),
    (["--beta", "-1"], "objective.beta"),
    (["--epochs", "0"], "train.epochs"),
    (["--arch", "linear", "--encoder-std", "data"], "encoder_std"),
    (["--model", "cvae"], "needs (x, y) pairs"),
    (["--schedule", "linear", "--schedule-set", "warmup_steps=100000", "--epochs", "1"], "longer than the run"),
])
def test_train_bad_configuration_exits_2(tmp_path, capsys, argv, fragment):
    status, _, err = run(capsys, "train", *argv, "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 2 and fragment in err, err
    assert len(err.strip().splitlines()) == 1


def test_train_warns_of_collapse_then_diagnose_writes_reports_that_agree_with_the_theory(tmp_path, capsys):
    # eigenvalues 9, 4, 1, 0.25 at β = 5: only the first exceeds βη_dec² = 5, so the theory keeps 1 of 3
    run_dir = tmp_path / "run"
    status, out, err = run(capsys, "train", "--model", "vae", "--arch", "linear", "--latent-dims", "3",
                           "--data", "gaussian:eigs=9:4:1:0.25,n=500,seed=1,exact=1", "--beta", "5", "--lr", "0.03",
                           "--epochs", "40", "--batch-size", "100", "--out", str(run_dir), "--no-progress")
    assert status == 0
    # the monitor's warning, printed as a message (not a source location), names the collapsed dimensions
    warnings = [line for line in err.splitlines() if line.startswith("collapsekit: warning: Posterior collapse")]
    assert warnings and "2 of 3 dimensions collapsed" in warnings[-1]
    assert "supports 1 of 3" in err and "β ≤" in err
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["active_units"] == [1] and len(last["collapsed_dims"][0]) == 2 and last["collapse_warnings"] == []

    status, out, _ = run(capsys, "diagnose", str(run_dir), "--samples", "200", "--json")
    assert status == 0
    report = json.loads(out)
    assert {p.name for p in (run_dir / "diagnosis").iterdir()} >= {"report.json", "report.md", "report.html"}
    level = report["levels"][0]
    assert level["active_units"] == 1 and level["n_active"] == 1 and report["n_active"] == 1
    assert level["theory"]["n_active_predicted"] == 1 and level["theory"]["label"] == "exact"
    # per example: the importance-sampled log-likelihood bounds the ELBO from above
    assert report["log_likelihood"] >= report["elbo"] - 1e-6
    cause = report["explanations"][0]
    assert cause["cause"] == "beta" and "keeps 3 of 3" in cause["prescription"]

    status, _, err = run(capsys, "diagnose", str(tmp_path / "missing"))
    assert status == 2 and err.count("\n") == 1


def test_one_value_parser_for_train_flags_and_sweep_grids():
    """`train --schedule-set` reads each value by the rule of `sweep --grid` (stated in CHANGELOG.md)."""
    from collapsekit.cli import build_parser
    from collapsekit.experiments.sweep import parse_grid

    text = "a=true,b=none,c=1:2,d=3,e=0.5,f=word,g=False"
    args = build_parser().parse_args(["train", "--out", "run", "--schedule-set", text])
    want = {"a": True, "b": None, "c": [1, 2], "d": 3, "e": 0.5, "f": "word", "g": False}
    assert repr(args.schedule__settings) == repr(want)           # repr: True is not 1, 3 is not 3.0
    assert repr({key: values[0] for key, values in parse_grid(text.split(",")).items()}) == repr(want)
