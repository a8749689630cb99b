"""The benchmark's measures of a forecast (one set for every method) and the tables and figures that show them:
the half of bench/forecast/score.py that only reads scored rows (score.py forecasts, tunes and writes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.forecast import pilot


KL_FLOOR = 1e-3          # nats: below the active threshold; log-KL errors of collapsed ranks are measured to it


# -- metrics (pure) -------------------------------------------------------------------------------------------
def metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """MAE, fraction exact, within ±1, interval coverage, mean interval width, mean |log10 KL error| per rank and
    mean cost of forecast rows (each: ``pred``, ``lo``, ``hi``, ``truth``, ``kl_pred``, ``kl_true``, ``cost``)."""
    if not rows:
        return {"n": 0, "mae": math.nan, "exact": math.nan, "within1": math.nan, "coverage": math.nan,
                "width": math.nan, "log_kl": math.nan, "cost": math.nan}
    err = np.array([abs(r["pred"] - r["truth"]) for r in rows], float)
    covered = [r["lo"] <= r["truth"] <= r["hi"] for r in rows]
    log_err = [log_kl_error(r["kl_pred"], r["kl_true"]) for r in rows]
    return {"n": len(rows), "mae": float(err.mean()), "exact": float(np.mean(err == 0)),
            "within1": float(np.mean(err <= 1)), "coverage": float(np.mean(covered)),
            "width": float(np.mean([r["hi"] - r["lo"] for r in rows])), "log_kl": float(np.mean(log_err)),
            "cost": float(np.mean([r["cost"] for r in rows]))}


def log_kl_error(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean over ranks (largest KL first) of |log10 max(KL_pred, floor) − log10 max(KL_true, floor)|."""
    p = np.sort(np.maximum(np.asarray(predicted, float), KL_FLOOR))[::-1]
    t = np.sort(np.maximum(np.asarray(measured, float), KL_FLOOR))[::-1]
    size = min(p.size, t.size)
    return float(np.mean(np.abs(np.log10(p[:size]) - np.log10(t[:size]))))


# -- tables ----------------------------------------------------------------------------------------------------
METHODS = ("closed_form", "posthoc", "adjusted", "shifted", "early", "early_only")
TITLES = {"closed_form": "closed form (configuration alone)", "posthoc": "post-hoc closed form (learned η_dec, final β)",
          "adjusted": "adjusted closed form", "shifted": "closed form, β shifted per regime (tuned)", "early": "early training (10 %) + base closed form",
          "early_only": "early training (10 %) alone (w = 1)"}
METHODS += pilot.METHODS
TITLES |= pilot.TITLES


def _pct(v: float) -> str:
    return "—" if math.isnan(v) else f"{100 * v:.0f} %"


def _num(v: float, digits: int = 2) -> str:
    return "—" if math.isnan(v) else f"{v:.{digits}f}"


def table(scored: dict[str, list[dict[str, Any]]], methods: Sequence[str] = METHODS) -> list[str]:
    lines = ["| method | rows | MAE | exact | within ±1 | interval coverage | mean width | log10 KL error per rank | "
             "cost |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method in methods:
        m = metrics(scored[method])
        lines.append(f"| {TITLES[method]} | {m['n']} | {_num(m['mae'])} | {_pct(m['exact'])} | {_pct(m['within1'])} | "
                     f"{_pct(m['coverage'])} | {_num(m['width'], 1)} | {_num(m['log_kl'])} | {_pct(m['cost'])} |")
    return lines


def breakdown(scored: dict[str, list[dict[str, Any]]], rows: list[dict[str, Any]], field: str) -> list[str]:
    """MAE / within ±1 of every method for each value of a regime field."""
    lookup = {(r["id"], r["seed"]): r for r in rows}
    values = sorted({str(lookup[(s["id"], s["seed"])][field]) for s in scored["early"]})
    lines = [f"| {field} | rows | " + " | ".join(f"{m}: MAE / ±1" for m in METHODS) + " |",
             "| --- | ---: |" + " ---: |" * len(METHODS)]
    for value in values:
        cells = []
        for method in METHODS:
            m = metrics([s for s in scored[method] if str(lookup[(s["id"], s["seed"])][field]) == value])
            cells.append(f"{_num(m['mae'])} / {_pct(m['within1'])}")
        n = sum(str(lookup[(s["id"], s["seed"])][field]) == value for s in scored["early"])
        lines.append(f"| {value} | {n} | " + " | ".join(cells) + " |")
    return lines


def regime_accuracy(scored: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A method's accuracy per value of each regime field (``regime_of``'s names), with its runs and
    configurations: the rows ``collapsekit.diagnostics.forecast_accuracy`` quotes for a configuration's regime."""
    lookup = {(r["id"], r["seed"]): r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for field in ("arch", "likelihood", "schedule"):
        out[field] = {}
        for value in sorted({str(lookup[(s["id"], s["seed"])][field]) for s in scored}):
            group = [s for s in scored if str(lookup[(s["id"], s["seed"])][field]) == value]
            out[field][value] = ({k: round(v, 4) for k, v in metrics(group).items() if k != "log_kl"}
                                 | {"configurations": len({s["id"] for s in group})})
    return out


def seed_spread(rows: list[dict[str, Any]]) -> tuple[int, float, float]:
    """(configurations with ≥ 2 seeds, fraction where the seeds agree exactly, mean |difference|)."""
    by: dict[str, list[int]] = {}
    for r in rows:
        by.setdefault(r["id"], []).append(r["n_active"])
    pairs = [v for v in by.values() if len(v) >= 2]
    if not pairs:
        return 0, math.nan, math.nan
    return (len(pairs), float(np.mean([max(v) == min(v) for v in pairs])),
            float(np.mean([max(v) - min(v) for v in pairs])))


def figure(scored: dict[str, list[dict[str, Any]]], method: str, path: Path) -> None:
    """Forecast against measured count (reporting split), with the stated intervals."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    rows = scored[method]
    rng = np.random.default_rng(0)
    if rows:
        truth = np.array([r["truth"] for r in rows], float) + rng.uniform(-0.2, 0.2, len(rows))
        pred = np.array([r["pred"] for r in rows], float)
        lo = pred - np.array([r["lo"] for r in rows])
        hi = np.array([r["hi"] for r in rows]) - pred
        ax.errorbar(truth, pred, yerr=[lo, hi], fmt="o", ms=3, alpha=0.6, elinewidth=0.6)
        top = max(max(r["truth"] for r in rows), max(r["hi"] for r in rows)) + 0.5
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.plot([0, top], [1, top + 1], "k:", lw=0.6)
        ax.plot([0, top], [-1, top - 1], "k:", lw=0.6)
    ax.set_xlabel("measured active dimensions (jittered)")
    ax.set_ylabel("forecast (bars: stated interval)")
    ax.set_title(TITLES[method], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
