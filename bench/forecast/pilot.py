"""The benchmark's methods that build on a pilot run or on a β factor for standardised data (docs/forecast.md §2), scored by
score.py beside the others; kept here so that score.py stays one file of the table's plumbing.

* ``early_pilot`` — the early method alone (w = 1, its tuned constants) where the run's 10 % prefix is its own
  beginning; where it is not (the early method's fallbacks) a pilot of ⌊0.1 · steps⌋ steps
  (:mod:`collapsekit.forecast.schedule_pilot`, results/pilots.jsonl from run_pilots.py), its KL extrapolated to the run's end
  and blended with the base closed form; the pilot's schedule variant, γ and blend weight are chosen on the tuning
  split's rows that get a pilot. Where a pilot (or the closed form) stands, the interval is the base closed form's
  conformal one around its count (the early rows keep theirs).
* ``adjusted_std`` — the adjusted closed form with β multiplied by one factor in one regime fixed before tuning:
  standardised data (the ``*_std`` data sets) with η_dec near 1 (fixed at 1 or learned), where the tables showed the
  closed forms missing; the factor is chosen on the tuning split's rows of that regime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PILOTS = HERE / "results" / "pilots.jsonl"

METHODS = ("adjusted_std", "early_pilot")
TITLES = {"adjusted_std": "adjusted, β tuned for standardised data with η_dec ≈ 1",
          "early_pilot": "early training alone, a pilot where no prefix serves (10 %)"}

_pilots: dict[tuple[str, int, str], dict[str, Any]] | None = None


def pilots() -> dict[tuple[str, int, str], dict[str, Any]]:
    """The recorded pilots at budget 0.1, by (id, seed, variant)."""
    from bench.forecast.run_truth import read_jsonl

    global _pilots
    if _pilots is None:
        _pilots = {(row["id"], int(row["seed"]), row["variant"]): row for row in read_jsonl(PILOTS)
                   if row.get("status") == "ok" and abs(row["budget"] - 0.1) < 1e-9}
    return _pilots


def early_pilot_rows(rows: list[dict[str, Any]], grid: dict[str, Any], cache: dict[str, Any],
                     tuned: dict[str, Any], *, variant: str, gamma: float, weight: float,
                     method: str = "early_pilot") -> list[dict[str, Any]]:
    """Early alone where a prefix serves, else the pilot's forecast (the closed form where no pilot exists)."""
    from bench.forecast.score import _at, _count, _early_kwargs, _regime, early_rows
    from collapsekit.diagnostics.forecast_intervals import conformal_interval, half_width
    from collapsekit.diagnostics.forecast_kernel import FLOOR, blend, free_bits_floor, interval_counts
    from collapsekit.forecast.schedule_pilot import pilot_ending

    o = tuned["early_only"]
    base_rows = early_rows(rows, grid, cache, budget=0.1, **_early_kwargs(o, tuned))
    out = []
    for r, s in zip(rows, base_rows):
        entry = grid[r["id"]]
        s = dict(s, method=method, pilot=False)
        if s["fallback"]:
            own = variant
            if entry["config"]["schedule"]["name"] == "constant":       # one pilot: the run's own beginning
                own = "fast_compressed" if variant.startswith("fast_") else "compressed"
            p = pilots().get((r["id"], int(r["seed"]), own))
            if p is not None:
                theory = np.maximum(np.asarray(_at(cache[r["id"]][o["base"]], o["beta_factor"]), float), FLOOR)
                ending = pilot_ending(p["trajectory"], p["steps"], p["total_steps"], gamma=gamma, variant=own)
                s |= {"kl_pred": blend(ending, theory, weight).tolist(), "cost": p["steps"] / p["total_steps"],
                      "pilot": True}
        # the free-bits floor, as the package's early forecast applies it (the early rows have it already)
        s["kl_pred"] = free_bits_floor(s["kl_pred"], entry["config"]["objective"].get("free_bits")).tolist()
        n = _count(s["kl_pred"])
        if s["fallback"]:          # a pilot's count, or the closed form's: the base's conformal interval around it
            lo, hi = conformal_interval(n, len(s["kl_pred"]), half_width(tuned[o["base"]]["conformal"], _regime(r)))
        elif o["interval"] == "conformal":     # the early rows' own interval, around the (floored) count
            lo, hi = conformal_interval(n, len(s["kl_pred"]), half_width(o["conformal"], _regime(r)))
        else:
            lo, hi = interval_counts(s["kl_pred"], o["threshold"]["width"])
        out.append(s | {"pred": n, "lo": min(lo, n), "hi": max(hi, n)})
    return out


def tune(rows: list[dict[str, Any]], grid: dict[str, Any], cache: dict[str, Any],
         tuned: dict[str, Any]) -> dict[str, Any]:
    """The pilot's constants from ``rows`` (the tuning split, or the rest in leave-one-dataset-out): variant, γ and
    weight by MAE (then exact) on the rows that get a pilot; then the interval factor over all rows."""
    from bench.forecast.score import GAMMAS, WEIGHTS, metrics
    from collapsekit.forecast.schedule_pilot import VARIANTS

    key = lambda m: (m["mae"], -m["exact"])  # noqa: E731
    best = None
    for variant in VARIANTS:
        for gamma in GAMMAS:
            for weight in WEIGHTS:
                scored = [s for s in early_pilot_rows(rows, grid, cache, tuned, variant=variant, gamma=gamma,
                                                      weight=weight) if s["pilot"]]
                if not scored:
                    continue
                score = key(metrics(scored))
                if best is None or score < best[0]:
                    best = (score, variant, gamma, weight)
    _, variant, gamma, weight = best if best is not None else (None, "final", 1.0, 1.0)
    return {"variant": variant, "gamma": gamma, "weight": weight}


def forecast_rows(rows: list[dict[str, Any]], grid: dict[str, Any], cache: dict[str, Any],
                  tuned: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    p = tuned["early_pilot"]
    constants = {k: p[k] for k in ("variant", "gamma", "weight")}
    return {"adjusted_std": adjusted_std_rows(rows, grid, cache, tuned),
            "early_pilot": early_pilot_rows(rows, grid, cache, tuned, **constants)}


# -- standardised data with η_dec near 1 (docs/forecast.md §4) ----------------------------------------------------
def standardised_near_one(entry: dict[str, Any]) -> bool:
    """The regime of ``adjusted_std``, fixed before tuning: standardised data (the ``*_std`` data sets) with a
    decoder std near 1 (η_dec fixed at 1, or learned from 1)."""
    model = entry["config"]["model"]
    return entry["data"].split("-")[0].endswith("_std") and (model["learn_eta_dec"] or model["eta_dec"] >= 0.5)


def adjusted_std_rows(rows: list[dict[str, Any]], grid: dict[str, Any], cache: dict[str, Any],
                      tuned: dict[str, Any], factor: float | None = None) -> list[dict[str, Any]]:
    """The adjusted closed form with β multiplied by ``factor`` (default: the tuned one) in the standardised, η_dec ≈ 1
    regime; its interval is the adjusted method's conformal half-width around the new count."""
    from bench.forecast.score import _at, _count, _regime, closed_rows
    from collapsekit.diagnostics.forecast_intervals import conformal_interval, half_width

    a = tuned["adjusted"]
    factor = tuned["adjusted_std"]["factor"] if factor is None else factor
    out = []
    for r, s in zip(rows, closed_rows(rows, cache, "adjusted", factor=a["beta_factor"], conformal=a["conformal"])):
        entry = grid[r["id"]]
        if standardised_near_one(entry):
            kl = np.asarray(_at(cache[r["id"]]["adjusted"], a["beta_factor"] * factor), float)
            pred = _count(kl)
            lo, hi = conformal_interval(pred, len(kl), half_width(a["conformal"], _regime(r)))
            s = s | {"pred": pred, "lo": lo, "hi": hi, "kl_pred": kl.tolist()}
        out.append(s | {"method": "adjusted_std"})
    return out


def tune_std(rows: list[dict[str, Any]], grid: dict[str, Any], cache: dict[str, Any],
             tuned: dict[str, Any]) -> dict[str, Any]:
    """The regime's β factor: the multiplier of least MAE (then most exact) on ``rows`` of that regime (1 where
    ``rows`` have none)."""
    from bench.forecast.score import MULTIPLIERS, metrics

    regime = [r for r in rows if standardised_near_one(grid[r["id"]])]
    if not regime:
        return {"factor": 1.0, "rows": 0}
    key = lambda m: (lambda x: (x["mae"], -x["exact"], abs(np.log(m))))(  # noqa: E731
        metrics(adjusted_std_rows(regime, grid, cache, tuned, factor=m)))
    return {"factor": min(MULTIPLIERS, key=key), "rows": len(regime)}
