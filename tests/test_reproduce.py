"""`collapsekit reproduce`: every preset of the paper's experiments runs at quick scale and writes its
table, figure and verdict; the linear presets' measured collapse equals the closed form's prediction
exactly; the CLI lists the presets, writes the combined report, and refuses bad input with status 2.

Each preset runs once (one test per preset, so that pytest-xdist spreads them over its workers)."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collapsekit.cli import main
from collapsekit.experiments.presets import PRESETS, get_preset, run_preset, select
from collapsekit.errors import ParameterError

#: Run through the CLI (with --report) in test_cli_runs_presets_and_writes_report instead.
VIA_CLI = ("theorem2", "theorem5")



def read_outputs(out: Path) -> tuple[list[dict[str, str]], dict]:
    for name in ("table.csv", "table.md", "result.json", "figure.png"):
        assert (out / name).is_file(), name
    assert (out / "figure.png").stat().st_size > 10_000           # a drawn figure, not an empty canvas
    with open(out / "table.csv", newline="", encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    return table, json.loads((out / "result.json").read_text(encoding="utf-8"))


def check_exact(rows: list[dict]) -> None:
    """Linear presets: measured active dims (KL ≥ 0.01 nats) equal the prediction in every row, and the
    rows are not all alike (some collapse predicted, some activity predicted)."""
    for row in rows:
        assert row["n_active_measured"] == row["n_active_predicted"], row
    predicted = [row["n_active_predicted"] for row in rows]
    assert min(predicted) < max(predicted) or any(0 < p for p in predicted)


def check_measured(rows: list[dict]) -> None:
    """Every training row: the measured count is the number of dimensions with KL ≥ 0.01 nats, the KL
    is their sum, the NLL is a finite number."""
    for row in rows:
        kl = row["kl_per_dim"]
        assert row["n_active_measured"] == sum(v >= 0.01 for v in kl)
        assert math.isclose(row["kl_nats"], sum(kl), rel_tol=1e-9, abs_tol=1e-12)
        assert all(v >= -1e-6 for v in kl)
        assert math.isfinite(row["nll_nats"])
        assert 0 <= row["active_units"] <= row["latent_size"]


def by(rows: list[dict], **where) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, where
    return found[0]


@pytest.mark.parametrize("name", [name for name in PRESETS if name not in VIA_CLI])
def test_preset_runs_at_quick_scale(name, tmp_path):
    preset = get_preset(name)
    result = run_preset(name, scale="quick", out=tmp_path / name, workers=2)
    table, saved = read_outputs(tmp_path / name)
    headers = [c["header"] for c in saved["columns"]]
    assert any("predicted" in h for h in headers) and any("measured" in h or "reached" in h for h in headers)
    assert len(table) == len(result.rows) >= 2
    assert saved["verdict"]["holds"] in (True, False, None)
    assert saved["verdict"]["verdict"] in ("holds", "does not hold", "inconclusive")
    assert saved["verdict"]["evidence"] and saved["notes"]
    rows = result.rows
    if name.startswith("theorem"):
        check_theorem(rows)
        return
    check_measured(rows)
    check_theory_column(tmp_path / name, rows, table, exact=preset.exact)
    if preset.exact:
        check_exact(rows)
    CLAIMS.get(name, lambda rows: None)(rows)


def check_theory_column(out: Path, rows: list[dict], table: list[dict[str, str]], *, exact: bool) -> None:
    """An estimated count (a nonlinear model) shows the post-hoc closed form's conformal interval for the run's
    regime, in table.csv (n_active_predicted_lo/_hi) and table.md ("13 (9–16)"), and its theory cell the
    benchmark's measured accuracy for that regime (MEASURED); an exact one neither."""
    from collapsekit.diagnostics.forecast_accuracy import MEASURED, MIN_REGIME_RUNS, QUOTED_BY
    from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width, regime_of
    from collapsekit.diagnostics.theory_compare import ESTIMATE, EXACT
    from collapsekit.training import RunConfig

    markdown = (out / "table.md").read_text(encoding="utf-8")
    for row, csv_row in zip(rows, table):
        assert csv_row["n_active_predicted_lo"] == ("" if row["n_active_predicted_lo"] is None
                                                    else str(row["n_active_predicted_lo"]))
        assert csv_row["n_active_predicted_hi"] == ("" if row["n_active_predicted_hi"] is None
                                                    else str(row["n_active_predicted_hi"]))
    estimated = [row for row in rows if row["theory"] == ESTIMATE]
    for row in rows:
        if row["theory"] != ESTIMATE:
            assert row["n_active_predicted_lo"] is None and row["n_active_predicted_hi"] is None, row
            assert row["theory_accuracy"] is None, row
    if exact:
        assert not estimated and all(row["theory"] == EXACT for row in rows)
        assert "within ±1" not in markdown and not re.search(r"\| \d+ \(\d+–\d+\) \|", markdown)
        return
    assert estimated, "a nonlinear preset's rows are estimates"
    # every nonlinear run of a preset shares the regime quoted (its likelihood) and the interval's half-width (its
    # arch's): read them from the run directories (E2 trains a linear arm beside its ReLU one)
    regimes = {json.dumps(regime, sort_keys=True) for regime in
               (regime_of(RunConfig.load(path)) for path in out.glob("runs/**/config.yaml"))
               if regime["arch"] != "linear"}
    assert regimes
    quoted = {json.loads(r)[QUOTED_BY] for r in regimes}
    widths = {half_width(CONFORMAL["posthoc"], json.loads(r)) for r in regimes}
    assert len(quoted) == 1 and len(widths) == 1, regimes
    (value,), (q,) = quoted, widths
    measured = MEASURED["posthoc"]["regimes"][QUOTED_BY][value]
    assert measured["n"] >= MIN_REGIME_RUNS
    clause = f"within ±1 on {100 * measured['within1']:.0f} % of the {measured['n']} benchmark runs"
    for row in estimated:
        n, lo, hi = row["n_active_predicted"], row["n_active_predicted_lo"], row["n_active_predicted_hi"]
        assert (lo, hi) == conformal_interval(n, row["latent_size"], q), row
        assert f"| {n} ({lo}–{hi}) |" in markdown
        assert row["theory_accuracy"].startswith(clause), row["theory_accuracy"]
        assert f"{ESTIMATE}; {row['theory_accuracy']}" in markdown


def check_theorem(rows: list[dict]) -> None:
    """Numerical minimisation reaches the closed-form loss (1e-6) with its singular values; trained
    linear models reach it within 0.5 % and collapse the predicted dimensions."""
    numeric = [r for r in rows if r["check"].startswith("numerical")]
    trained = [r for r in rows if r["check"].startswith("trained")]
    assert len(numeric) == 2 and len(trained) == 2
    for row in numeric:
        assert row["relative_gap"] <= 1e-6 and row["max_sv_error"] < 1e-4, row
        assert row["n_inactive_measured"] == row["n_inactive_predicted"]
    for row in trained:
        assert row["relative_gap"] < 5e-3, row
        assert row["n_inactive_measured"] == row["n_inactive_predicted"], row
    for row in rows:
        assert row["n_active_measured"] == row["n_active_predicted"], row


# -- what each preset's quick run must show (seeded runs, so these are also regression checks; the
# -- margins are wide: a change of torch version must not flip them) ----------------------------------
def _e1(rows):
    # β and η_dec: the smallest value keeps every dimension, the largest collapses all of them
    for varied in ("β", "η_dec"):
        line = sorted((r for r in rows if r["varied"] == varied), key=lambda r: r["value"])
        assert line[0]["n_active_measured"] == line[0]["latent_size"]
        assert line[-1]["n_active_measured"] == 0 and line[-1]["kl_nats"] < 0.16


def _e2(rows):
    # digit 1 has the smallest residual spectrum: the least predicted and the least measured KL
    one = by(rows, digit=1)
    assert one["kl_predicted_nats"] == min(r["kl_predicted_nats"] for r in rows)
    assert one["kl_nats"] == min(r["kl_nats"] for r in rows)


def _relu_mhvae(rows):
    # z₂ keeps more information as β₁ grows and less as β₂ grows (E3, E14)
    for varied, grows in (("β₁", True), ("β₂", False)):
        line = sorted((r for r in rows if r["varied"] == varied), key=lambda r: r["value"])
        low, high = line[0], line[-1]
        assert (high["kl_nats"] > 2 * low["kl_nats"]) if grows else (low["kl_nats"] > 2 * high["kl_nats"])


def _grid(rows, *, collapsed, protected, reference):
    """E4, E10: at large β₂ with small β₁ z₂ collapses and reconstructions through it degrade; a large
    β₁ keeps (part of) z₂ at the same β₂."""
    gone, kept, base = by(rows, **collapsed), by(rows, **protected), by(rows, **reference)
    assert gone["n_active_measured"] <= 1 and gone["active_units"] == 0
    assert kept["n_active_measured"] > gone["n_active_measured"] or kept["kl_nats"] > 3 * gone["kl_nats"]
    assert gone["recon_error"] > 1.5 * base["recon_error"]


def _e5(rows):
    top = max(r["beta"] for r in rows)
    learnable, fixed = by(rows, arm="learnable Σ", beta=top), by(rows, arm="fixed σ = 0.5", beta=top)
    assert learnable["n_collapsed_measured"] >= 1 and fixed["n_collapsed_measured"] == 0
    # a fixed σ = 0.5 keeps at least KL(N(0, 0.25) ‖ N(0, 1)) = 0.318 nats in every dimension
    assert min(fixed["kl_per_dim"]) > 0.3


def _e6(rows):
    learnable = by(rows, arm="learnable Σ", beta=2.0)
    assert learnable["n_collapsed_measured"] >= 4
    for row in rows:
        if row["arm"] == "fixed σ = 0.5":
            assert row["n_collapsed_measured"] == 0 and min(row["kl_per_dim"]) > 0.3


def _e9(rows):
    independent, identical = by(rows, rho=0.0), by(rows, rho=1.0)
    assert independent["n_active_measured"] == independent["latent_size"]
    assert identical["n_active_measured"] <= 2 and identical["kl_nats"] < 0.1 * independent["kl_nats"]


CLAIMS = {
    "cvae-beta-eta": _e1, "cvae-digits": _e2, "mhvae-beta-eta": _relu_mhvae, "mhvae-metrics": _relu_mhvae,
    "mhvae-samples": lambda rows: _grid(rows, collapsed={"beta1": 0.05, "beta2": 3.0},
                                        protected={"beta1": 3.0, "beta2": 3.0},
                                        reference={"beta1": 0.05, "beta2": 0.05}),
    "mhvae-cnn": lambda rows: _grid(rows, collapsed={"beta1": 0.5, "beta2": 8.0},
                                    protected={"beta1": 8.0, "beta2": 8.0}, reference={"beta1": 0.5, "beta2": 0.5}),
    "vae-learnable-sigma": _e5, "vae-sigma-metrics": _e6, "cvae-correlation": _e9,
}


# -- the command line ----------------------------------------------------------------------------------
def test_cli_runs_presets_and_writes_report(tmp_path, capsys):
    report = tmp_path / "docs" / "reproduction.md"
    status = main(["reproduce", ",".join(VIA_CLI), "--out", str(tmp_path / "out"), "--report", str(report),
                   "--workers", "2", "--no-progress"])
    assert status == 0
    text = report.read_text(encoding="utf-8")
    for name in VIA_CLI:
        table, saved = read_outputs(tmp_path / "out" / name)
        assert saved["verdict"]["holds"] is True, saved["verdict"]
        check_theorem(saved["rows"])
        image = report.parent / "images" / "reproduction" / f"{name}.png"
        assert image.is_file() and f"](images/reproduction/{name}.png)" in text
        assert f"## {saved['paper_id']} · {name}" in text and saved["verdict"]["sentence"] in text
    assert "- Command: `collapsekit reproduce theorem2,theorem5 --scale quick" in text
    assert "CPU cores available" in text


def test_list_names_every_preset(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for preset in PRESETS.values():
        assert preset.name in out and preset.paper_id in out
    assert [p.paper_id for p in PRESETS.values()] == [f"E{i}" for i in range(1, 15)]


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["reproduce", "no-such-preset"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("collapsekit: error: unknown preset 'no-such-preset'") and "\n" not in err
    assert main(["reproduce"]) == 2
    assert "name a preset" in capsys.readouterr().err
    # the paper scale needs the full MNIST: refused before anything trains
    assert main(["reproduce", "cvae-linear", "--scale", "paper", "--out", str(tmp_path / "p")]) == 2
    assert "--data mnist:DIR" in capsys.readouterr().err
    assert not (tmp_path / "p" / "runs").exists()
    with pytest.raises(ParameterError):
        select("theorem2,nope")
    assert [p.name for p in select("theorem5, theorem2")] == ["theorem2", "theorem5"]


def test_cli_import_does_not_import_torch():
    code = ("import sys; from collapsekit.cli import build_parser; build_parser(); "
            "import collapsekit.experiments.presets; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- progress --------------------------------------------------------------------------------------------
def test_training_runs_are_counted_through_a_sweep_and_a_rerun_counts_the_finished_ones(tmp_path):
    """The preset's "training runs" stage goes up as the sweep's points finish, ends at all of them, and a
    rerun (every point done) reaches the same end at once; a lone run counts once it has trained."""
    from collapsekit.experiments.reproduction.context import Context
    from collapsekit.experiments.reproduction.runs import train_grid
    from collapsekit.training import RunConfig

    base = RunConfig.parse({"data": {"spec": "gaussian:eigs=9:4:1,n=128,exact=1"},
                            "model": {"kind": "vae", "arch": "linear", "latent_dims": [2]},
                            "optim": {"lr": 0.03}, "train": {"epochs": 2, "batch_size": 64, "progress": False}})
    for attempt in ("first", "rerun"):
        calls: list[tuple[str, int, int]] = []
        ctx = Context(preset=get_preset("cvae-correlation"), scale="quick", out_dir=tmp_path, workers=2,
                      stage=lambda *call: calls.append(call))
        points = train_grid(ctx, "beta", base, {"beta": [0.5, 2, 5]}, seed=0)
        train_grid(ctx, "lone", base, {}, seed=0)
        trained = [(done, total) for name, done, total in calls if name == "training runs"]
        assert trained[-1] == (4, 4) and len(points) == 3, (attempt, calls)
        assert [done for done, _ in trained] == sorted(done for done, _ in trained)      # never backwards
        assert {name for name, _, _ in calls} == {"training runs"}
        if attempt == "first":
            assert (0, 3) in trained and any(0 < done < 3 for done, total in trained if total == 3)
        else:                                           # nothing to train: the sweep's points count at once
            assert trained[:2] == [(0, 3), (3, 3)]


def _run_on_a_terminal(argv: list[str], timeout: float = 300) -> tuple[int, str, str]:
    """`collapsekit ARGV` with stderr on a pseudo-terminal (rich draws its bars) and stdout on a pipe:
    (status, stdout, what the terminal received)."""
    import os
    import pty
    import threading

    master, slave = pty.openpty()
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:                              # the child closed the terminal
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    try:
        done = subprocess.run([sys.executable, "-m", "collapsekit", *argv], stdout=subprocess.PIPE, stderr=slave,
                              stdin=subprocess.DEVNULL, env=env, timeout=timeout, check=False)
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    return done.returncode, done.stdout.decode(), received.decode(errors="replace")


def test_reproduce_shows_progress_on_a_terminal_without_touching_its_outputs(tmp_path):
    """On a terminal: a bar per stage of the experiment (its training runs, its measurements); stdout and
    the output files are what a run with --no-progress writes (a rerun into the same folder measures again)."""
    out = tmp_path / "theorem2"
    status, stdout, terminal = _run_on_a_terminal(["reproduce", "theorem2", "--out", str(out), "--workers", "2"])
    assert status == 0, terminal
    assert "theorem2: training runs" in terminal and "theorem2: measuring runs" in terminal
    assert "\x1b[" in terminal                                   # drawn as a bar, not as log lines
    assert "\x1b" not in stdout and "theorem2" in stdout and "holds" in stdout
    table, saved = read_outputs(out)
    check_theorem(saved["rows"])
    first = {name: (out / name).read_bytes() for name in ("table.csv", "table.md")}

    quiet = subprocess.run([sys.executable, "-m", "collapsekit", "reproduce", "theorem2", "--out", str(out),
                            "--workers", "2", "--no-progress"], capture_output=True, text=True, timeout=300,
                           check=False)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""                                    # --no-progress: not a line
    assert {name: (out / name).read_bytes() for name in first} == first
    assert json.loads((out / "result.json").read_text())["rows"] == saved["rows"]
