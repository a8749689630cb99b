"""``collapsekit predict --config RUN.yaml`` (issue 11 §3): any run configuration. A linear one gets the exact closed
form, the same numbers as ``predict MODEL`` with the run's settings; a nonlinear one the closed-form forecast with
its interval and the benchmark's measured accuracy of that method, not a bare number; bad combinations are one
line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from collapsekit.cli import main
from collapsekit.forecast import MEASURED, forecast_config
from collapsekit.training.config import RunConfig

SPEC = "gaussian:eigs=9:4:1:0.25:0.04:0.01,n=2000,seed=1,exact=1"


def write(tmp_path: Path, arch: str, **model) -> Path:
    path = tmp_path / f"{arch}.yaml"
    config = {"data": {"spec": SPEC}, "model": {"kind": "vae", "arch": arch, "latent_dims": [4], **model},
              "objective": {"beta": 2.0}, "train": {"epochs": 5}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def close(a, b) -> bool:
    """Equal structure, numbers equal to 1e-6 relative."""
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return b == pytest.approx(a, rel=1e-6, abs=1e-9)
    return a == b


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_linear_configuration_gets_the_exact_closed_form_as_predict_gives_it(tmp_path, capsys):
    status, out, _ = cli(capsys, "predict", "--config", str(write(tmp_path, "linear")), "--json")
    assert status == 0
    status, direct, _ = cli(capsys, "predict", "vae", "--latent-dim", "4", "--beta", "2", "--data", SPEC, "--json")
    # the same prediction; the run's rows are float32 (what the model trains on), predict's float64
    assert status == 0 and close(json.loads(out), json.loads(direct))
    assert json.loads(out)["n_active"] == 2          # eigenvalues 9 and 4 exceed βη_dec² = 2
    status, text, _ = cli(capsys, "predict", "--config", str(write(tmp_path, "linear")))
    assert status == 0 and "2 of 4 latent dimensions active" in text and "benchmark" not in text


def test_a_nonlinear_configuration_gets_an_interval_and_the_measured_accuracy(tmp_path, capsys):
    path = write(tmp_path, "mlp", hidden=[16])
    status, out, _ = cli(capsys, "predict", "--config", str(path), "--json")
    assert status == 0
    got = json.loads(out)
    expected = forecast_config(RunConfig.load(path), budget=0.0)
    # what collapsekit forecast --budget 0 returns: the adjusted closed form (the cost-0 base chosen on the tuning split)
    assert (got["n_active"], got["interval"], got["method"]) == (expected.n_active, list(expected.interval),
                                                                 "adjusted")
    lo, hi = got["interval"]
    assert lo <= got["n_active"] <= hi and hi > lo       # an interval, not a bare number
    # a fixed η_dec: the reporting split's row of the runs with a fixed η_dec (enough of them to quote)
    row = MEASURED["adjusted"]["regimes"]["likelihood"]["fixed"]
    assert got["benchmark"] == row | {"regime": "fixed"} and got["cost_fraction"] == 0
    status, text, _ = cli(capsys, "predict", "--config", str(path))
    assert status == 0 and f"interval {lo}–{hi}" in text
    assert f"within ±1 on {100 * row['within1']:.0f} %" in text
    assert f"of the {row['n']} benchmark runs with a fixed η_dec" in text


def test_save_writes_what_json_prints(tmp_path, capsys):
    saved = tmp_path / "p.json"
    status, out, _ = cli(capsys, "predict", "--config", str(write(tmp_path, "mlp")), "--json", "--save", str(saved))
    assert status == 0 and json.loads(saved.read_text()) == json.loads(out)


@pytest.mark.parametrize("extra, problem", [(["vae"], "not both"), (["--beta", "3"], "--beta does not go with"),
                                            (["--data", "digits:n=50"], "--data does not go with"),
                                            (["--recommend", "2"], "--recommend does not go with")])
def test_options_the_configuration_gives_are_one_line_errors(tmp_path, capsys, extra, problem):
    status, _, err = cli(capsys, "predict", *extra, "--config", str(write(tmp_path, "mlp")))
    assert status == 2 and problem in err and err.count("\n") == 1 and "Traceback" not in err


def test_no_model_and_no_configuration_is_one_line(capsys):
    status, _, err = cli(capsys, "predict")
    assert status == 2 and "a model (vae, cvae, hvae) or --config" in err and err.count("\n") == 1
