"""Score every forecast method on the benchmark's ground truth; tune constants on the tuning split only.

    python bench/forecast/score.py          # from the repository root; reads results/truth.jsonl

Writes ``results/forecasts.csv`` (each method's forecast of each (configuration, seed)),
``src/collapsekit/diagnostics/forecast_tuned.json`` (the constants chosen on the tuning split: package data, the
package's constants), ``src/collapsekit/diagnostics/forecast_accuracy.json`` (the reporting
split's numbers of the methods ``collapsekit forecast`` ships: package data, read by ``forecast_accuracy.MEASURED``), ``results/scores.md`` (the tables), the tables into
docs/forecast.md between its markers, and one forecast-vs-measured figure per method (docs/forecast_*.png).
Closed-form curves (the count at β times each multiplier) are cached in ``results/curves.json``, valid while the
package's closed-form code is unchanged (a changed file recomputes them all).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.forecast import pilot  # noqa: E402 — the pilot and standardised-data methods (bench/forecast/pilot.py)
from bench.forecast.tables import (METHODS, TITLES, _num, _pct, breakdown, figure, metrics,  # noqa: E402,F401
                                   regime_accuracy, seed_spread, table)
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "forecast.md"
#: The reporting split's accuracy of the shipped methods: package data (its one home), read by MEASURED.
ACCURACY = ROOT / "src" / "collapsekit" / "diagnostics" / "forecast_accuracy.json"
#: The constants tuned on the tuning split: package data (their one home), read by forecast_accuracy.TUNED.
TUNED = ROOT / "src" / "collapsekit" / "diagnostics" / "forecast_tuned.json"
BEGIN, END = "<!-- tables:begin (bench/forecast/score.py) -->", "<!-- tables:end -->"

#: β multipliers of the cached closed-form curves: 2^(j/2), j = −12 … 12.
MULTIPLIERS = [2 ** (j / 2) for j in range(-12, 13)]
WIDTHS = [2 ** (j / 2) for j in range(0, 7)]          # interval factor c: 1 … 8
FACTORS = [2 ** (j / 2) for j in range(-4, 5)]        # adjusted β factor s: ¼ … 4
GAMMAS = [0.0, 0.5, 1.0]
WEIGHTS = [0.0, 0.5, 0.75, 1.0]
EARLY_WIDTHS = [1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0]
BUDGETS = [0.05, 0.1, 0.2]
COVERAGE_TARGET = 0.9
REGIME_FIELDS = ("arch", "likelihood", "schedule", "kind")
CONFORMAL_BY = (None, "likelihood", "arch", "schedule")     # candidate regime fields of the conformal quantile
SHIFT_BY = (None, "schedule", "likelihood", "arch", "kind")  # candidate regime fields of the shifted β factor
FOLDS = 5                    # cross-validation inside the tuning split (folds by configuration id)
MIN_SHIFT_CONFIGURATIONS = 2


# -- forecasts -------------------------------------------------------------------------------------------------
def _config(entry: dict[str, Any], seed: int = 0) -> Any:
    from collapsekit.training.config import RunConfig

    values = json.loads(json.dumps(entry["config"]))
    values["train"]["seed"] = seed
    return RunConfig.parse(values)


#: The package's files the cached closed-form curves are computed by (the theory and the forecasts' closed forms).
CURVE_SOURCES = ("forecast/closed_form.py", "diagnostics/forecast_kernel.py", "diagnostics/theory_compare.py",
                 "theory/*.py")


def _curve_code() -> str:
    """SHA-256 of :data:`CURVE_SOURCES` and the multipliers: the key under which results/curves.json is valid."""
    import hashlib

    package = ROOT / "src" / "collapsekit"
    digest = hashlib.sha256(json.dumps(MULTIPLIERS).encode())
    for pattern in CURVE_SOURCES:
        for file in sorted(package.glob(pattern)):
            digest.update(file.read_bytes())
    return digest.hexdigest()


def curves(grid: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For each configuration: the closed-form KL per rank at β × each multiplier, per closed-form method
    (the post-hoc one per seed where η_dec was learned); cached in results/curves.json."""
    from collapsekit.forecast.closed_form import method_kl
    from collapsekit.training.builders import load_training_data

    path = RESULTS / "curves.json"
    cache = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if cache.get("_code") != _curve_code():        # curves of an older closed form: recompute them all
        cache = {"_code": _curve_code()}
    wanted = {(r["id"], r["seed"]) for r in rows}
    for cid in sorted({cid for cid, _ in wanted}):
        seeds = sorted(seed for c, seed in wanted if c == cid)
        config = _config(grid[cid])
        keys = ["closed_form", "adjusted"] + [f"posthoc/{seed}" for seed in seeds]
        have = cache.setdefault(cid, {})
        if all(key in have for key in keys):
            continue
        data = load_training_data(config)
        for method in ("closed_form", "adjusted"):
            if method not in have:
                # the adjusted curve at β factor 1: the factor is what tune() chooses on top of it (the package's
                # shipped factor baked in here would be applied twice)
                kl_at, _ = method_kl(method, config, data, **({"beta_factor": 1.0} if method == "adjusted" else {}))
                have[method] = [kl_at(m).tolist() for m in MULTIPLIERS]
        for seed in seeds:
            row = next(r for r in rows if r["id"] == cid and r["seed"] == seed)
            kl_at, _ = method_kl("posthoc", config, data, eta_dec=row.get("eta_dec"))
            have[f"posthoc/{seed}"] = [kl_at(m).tolist() for m in MULTIPLIERS]
        path.write_text(json.dumps(cache), encoding="utf-8")
    return cache


def _at(curve: list[list[float]], multiplier: float) -> list[float]:
    index = int(np.argmin([abs(math.log(m / multiplier)) for m in MULTIPLIERS]))
    return curve[index]


def _count(kl: Sequence[float]) -> int:
    from collapsekit.activity import count_active

    return count_active(kl)


def _regime(row: dict[str, Any]) -> dict[str, str]:
    return {k: str(row[k]) for k in REGIME_FIELDS}


def _factor(shift: dict[str, Any] | None, row: dict[str, Any], factor: float) -> float:
    if shift is None:
        return factor
    by = shift["by"]
    return float(shift["regimes"].get(str(row[by]), shift["pooled"]) if by is not None else shift["pooled"])


def closed_rows(rows: list[dict[str, Any]], cache: dict[str, Any], method: str, *, width: float | None = None,
                factor: float = 1.0, conformal: dict[str, Any] | None = None,
                shift: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The forecast rows of a closed-form method at a β factor (per regime: ``shift``, on the closed form's
    curve, for ``shifted``), with a conformal interval (``conformal``) or the counts at β·c, β/c (``width``)."""
    from collapsekit.diagnostics.forecast_intervals import conformal_interval, half_width

    out = []
    for r in rows:
        key = {"posthoc": f"posthoc/{r['seed']}", "shifted": (shift or {}).get("base", "closed_form")}.get(method, method)
        curve = cache[r["id"]][key]
        f = _factor(shift, r, factor)
        kl = _at(curve, f)
        pred = _count(kl)
        if conformal is not None:
            lo, hi = conformal_interval(pred, len(kl), half_width(conformal, _regime(r)))
        else:
            w = 1.0 if width is None else width
            lo, hi = min(_count(_at(curve, f * w)), pred), max(_count(_at(curve, f / w)), pred)
        out.append({"id": r["id"], "seed": r["seed"], "method": method, "pred": pred, "lo": lo, "hi": hi,
                    "truth": r["n_active"], "kl_pred": kl, "kl_true": r["kl_sorted"], "cost": 0.0})
    return out


def early_rows(rows: list[dict[str, Any]], grid: dict[str, dict[str, Any]], cache: dict[str, Any], *,
               budget: float, gamma: float, weight: float, factor: float, fallback: dict[str, Any],
               base: str = "adjusted", width: float = 1.0,
               conformal: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The early-training forecast rows (the first epochs of each run's recorded trajectory), with a conformal
    interval (``conformal``) or the counts whose KL clears 0.01·c and 0.01/c nats (``width`` c); a row that falls
    back has the base closed form's conformal interval (``fallback``)."""
    from collapsekit.diagnostics.forecast_intervals import conformal_interval, half_width
    from collapsekit.diagnostics.forecast_kernel import FLOOR, blend, free_bits_floor, interval_counts
    from collapsekit.forecast.early import extrapolate, prefix_epochs, prefix_problem

    out = []
    for r in rows:
        entry = grid[r["id"]]
        config = _configs.setdefault(r["id"], _config(entry))
        if base != "adjusted":
            factor = 1.0
        theory = np.maximum(np.asarray(_at(cache[r["id"]][base], factor), float), FLOOR)
        k = prefix_epochs(config, budget)
        problem = prefix_problem(config, k, entry["rows"])
        if problem is not None:
            kl, cost = theory, 0.0
            (stands,) = closed_rows([r], cache, base, factor=factor, conformal=fallback)   # with its own interval
            lo, hi = stands["lo"], stands["hi"]
        else:
            ending = np.sort(extrapolate(np.asarray(r["trajectory"], float)[:k], config.train.epochs,
                                         gamma=gamma))[::-1]
            kl = free_bits_floor(blend(ending, theory, weight),   # the package's own kernels: what it ships is
                                 config.objective.free_bits)       # what is scored
            lo, hi = (interval_counts(kl, width) if conformal is None else
                      conformal_interval(_count(kl), len(kl), half_width(conformal, _regime(r))))
            cost = k / config.train.epochs
        n = _count(kl)
        out.append({"id": r["id"], "seed": r["seed"], "method": "early", "pred": n, "lo": min(lo, n),
                    "hi": max(hi, n), "truth": r["n_active"], "kl_pred": list(map(float, kl)),
                    "kl_true": r["kl_sorted"], "cost": cost, "fallback": problem is not None})
    return out


_configs: dict[str, Any] = {}


def eta_estimates(grid: dict[str, dict[str, Any]], rows: list[dict[str, Any]], cache: dict[str, Any]) -> None:
    """For each learned-η_dec configuration: the linear optimum's fixed point and Adam's bound η₀·exp(−Σ lr)
    (:func:`~collapsekit.forecast.closed_form.eta_reach`), cached in results/curves.json as ``eta``."""
    from collapsekit.forecast.closed_form import (_arrays, _moments, _variances, eta_reach, final_beta_scale,
                                                  learned_eta_estimate)
    from collapsekit.training.builders import load_training_data

    todo = sorted({r["id"] for r in rows if r["likelihood"] == "learned" and "eta" not in cache.get(r["id"], {})})
    for cid in todo:
        config = _config(grid[cid])
        x, y = _arrays(load_training_data(config))
        kind = config.model.kind
        spectrum = _variances(kind, _moments(kind, x, y, centred=True))
        beta = config.objective.beta
        first = float(beta[0] if isinstance(beta, list) else beta)
        fixed = learned_eta_estimate(config, spectrum, first * final_beta_scale(config, x.shape[0]))
        cache.setdefault(cid, {})["eta"] = [fixed, eta_reach(config, x.shape[0])]
    if todo:
        (RESULTS / "curves.json").write_text(json.dumps(cache), encoding="utf-8")


def eta_table(rows: list[dict[str, Any]], cache: dict[str, Any]) -> list[str]:
    """How well each estimate forecasts the learned η_dec (rows with a learned η_dec, per split)."""
    lines = ["| split | rows | fixed point: mean abs log ratio | max(fixed point, Adam bound): mean abs log ratio | "
             "runs where the bound is the larger |", "| --- | ---: | ---: | ---: | ---: |"]
    for split in ("tuning", "reporting"):
        learned = [r for r in rows if r["split"] == split and r["likelihood"] == "learned" and r.get("eta_dec")]
        if not learned:
            continue
        fixed = [abs(math.log(cache[r["id"]]["eta"][0] / r["eta_dec"])) for r in learned]
        both = [abs(math.log(max(cache[r["id"]]["eta"]) / r["eta_dec"])) for r in learned]
        bound = sum(cache[r["id"]]["eta"][1] > cache[r["id"]]["eta"][0] for r in learned)
        lines.append(f"| {split} | {len(learned)} | {np.mean(fixed):.3f} | {np.mean(both):.3f} | {bound} |")
    return lines


# -- tuning ----------------------------------------------------------------------------------------------------
def _fold(cid: str) -> int:
    return int(cid, 16) % FOLDS


def residuals(scored: list[dict[str, Any]]) -> dict[str, list[int]]:
    """{configuration id: [measured − forecast per seed]}."""
    out: dict[str, list[int]] = {}
    for s in scored:
        out.setdefault(s["id"], []).append(s["truth"] - s["pred"])
    return out


def choose_conformal(scored: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Conformal half-widths of a method from its rows: the regime field (or none) whose intervals, calibrated
    on 4 of 5 folds of these configurations and checked on the fifth, cover ≥ 90 % at the smallest mean width
    (the best-covering one if none does), then calibrated on all of them."""
    from collapsekit.diagnostics.forecast_intervals import calibrate, conformal_interval, half_width

    regimes = {r["id"]: _regime(r) for r in rows}
    latent = {(r["id"], r["seed"]): r["latent_size"] for r in rows}
    best = None
    for by in CONFORMAL_BY:
        covered, widths = [], []
        for fold in range(FOLDS):
            train = residuals([s for s in scored if _fold(s["id"]) != fold])
            constants = calibrate(train, regimes, by=by)
            for s in scored:
                if _fold(s["id"]) == fold:
                    lo, hi = conformal_interval(s["pred"], latent[(s["id"], s["seed"])],
                                                half_width(constants, regimes[s["id"]]))
                    covered.append(lo <= s["truth"] <= hi)
                    widths.append(hi - lo)
        coverage, width = float(np.mean(covered)), float(np.mean(widths))
        rank = (coverage < COVERAGE_TARGET, -coverage if coverage < COVERAGE_TARGET else width)
        if best is None or rank < best[0]:
            best = (rank, by, coverage, width)
    assert best is not None
    _, by, coverage, width = best
    return calibrate(residuals(scored), regimes, by=by) | {"cv_coverage": round(coverage, 4),
                                                            "cv_width": round(width, 4)}


def tune_shift(rows: list[dict[str, Any]], cache: dict[str, Any], by: str | None,
               base: str = "closed_form") -> dict[str, Any]:
    """The shifted closed form's β factors on the ``base`` closed form from ``rows``: per value of ``by`` with ≥ 2
    configurations, the multiplier of least MAE (then most exact); the pooled one for the rest."""
    key = lambda rs, m: (lambda x: (x["mae"], -x["exact"]))(metrics(closed_rows(rs, cache, base,  # noqa: E731
                                                                                factor=m)))
    pooled = min(MULTIPLIERS, key=lambda m: key(rows, m))
    out: dict[str, Any] = {"base": base, "pooled": pooled, "by": by, "regimes": {}}
    if by is not None:
        for value in sorted({str(r[by]) for r in rows}):
            group = [r for r in rows if str(r[by]) == value]
            if len({r["id"] for r in group}) >= MIN_SHIFT_CONFIGURATIONS:
                out["regimes"][value] = min(MULTIPLIERS, key=lambda m: key(group, m))
    return out


def crossfit_shift(rows: list[dict[str, Any]], cache: dict[str, Any], by: str | None,
                   base: str = "closed_form") -> list[dict[str, Any]]:
    """The shifted forecast of each row with factors tuned on the other folds (out-of-fold rows)."""
    out = []
    for fold in range(FOLDS):
        held = [r for r in rows if _fold(r["id"]) == fold]
        if held:
            train = [r for r in rows if _fold(r["id"]) != fold]
            out += closed_rows(held, cache, "shifted", shift=tune_shift(train, cache, by, base))
    return out


def tune(rows: list[dict[str, Any]], grid: dict[str, dict[str, Any]], cache: dict[str, Any]) -> dict[str, Any]:
    """Every method's constants from ``rows`` alone: count constants by MAE (then fraction exact), then the
    conformal interval half-widths (:func:`choose_conformal`) on the point forecast's residuals — out-of-fold
    residuals for the shifted closed form, whose factors are themselves tuned on these rows."""
    key = lambda m: (m["mae"], -m["exact"])  # noqa: E731
    tuned: dict[str, Any] = {}
    for method in ("closed_form", "posthoc"):
        tuned[method] = {"conformal": choose_conformal(closed_rows(rows, cache, method), rows)}
    factor = min(FACTORS, key=lambda s: key(metrics(closed_rows(rows, cache, "adjusted", factor=s))))
    tuned["adjusted"] = {"beta_factor": factor,
                         "conformal": choose_conformal(closed_rows(rows, cache, "adjusted", factor=factor), rows)}
    base, by = min(((b, f) for b in ("closed_form", "adjusted") for f in SHIFT_BY),
                   key=lambda bf: key(metrics(crossfit_shift(rows, cache, bf[1], bf[0]))))
    tuned["shifted"] = {"shift": tune_shift(rows, cache, by, base),
                        "conformal": choose_conformal(crossfit_shift(rows, cache, by, base), rows)}
    best = None
    for base in ("closed_form", "adjusted"):
        base_factor = factor if base == "adjusted" else 1.0
        fallback = tuned[base]["conformal"]
        for gamma in GAMMAS:
            for weight in WEIGHTS:
                score = key(metrics(early_rows(rows, grid, cache, budget=0.1, gamma=gamma, weight=weight, width=1.0,
                                               factor=base_factor, fallback=fallback, base=base)))
                if best is None or score < best[0]:
                    best = (score, base, gamma, weight)
    assert best is not None
    _, base, gamma, weight = best
    base_factor, fallback = (factor if base == "adjusted" else 1.0), tuned[base]["conformal"]
    # the trajectory alone (w = 1), for comparison: γ tuned the same way, the same fallback
    gamma_only = min(GAMMAS, key=lambda g: key(metrics(early_rows(rows, grid, cache, budget=0.1, gamma=g, weight=1.0,
                                                                  factor=base_factor, fallback=fallback,
                                                                  base=base))))
    for name, g, w in (("early", gamma, weight), ("early_only", gamma_only, 1.0)):
        point = early_rows(rows, grid, cache, budget=0.1, gamma=g, weight=w, factor=base_factor, fallback=fallback,
                           base=base)
        tuned[name] = {"base": base, "gamma": g, "weight": w, "beta_factor": base_factor} | early_interval(point, rows)
    tuned["early_pilot"] = pilot.tune(rows, grid, cache, tuned)
    tuned["adjusted_std"] = pilot.tune_std(rows, grid, cache, tuned)
    return tuned


def _threshold_interval(s: dict[str, Any], width: float) -> tuple[int, int]:
    from collapsekit.diagnostics.forecast_kernel import interval_counts

    lo, hi = interval_counts(s["kl_pred"], width)
    return min(lo, s["pred"]), max(hi, s["pred"])


def _smallest_threshold(scored: list[dict[str, Any]]) -> float:
    """The smallest KL-threshold factor c whose intervals cover ≥ 90 % of ``scored`` (the largest if none does)."""
    for width in EARLY_WIDTHS:
        if np.mean([lo <= s["truth"] <= hi for s in scored for lo, hi in [_threshold_interval(s, width)]]) \
                >= COVERAGE_TARGET:
            return width
    return EARLY_WIDTHS[-1]


def early_interval(point: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The early method's interval from its point forecasts on ``rows``, calibrated on the rows where a prefix
    existed (a fallback row states its base closed form's interval, calibrated with that base): the split-conformal
    half-widths (:func:`choose_conformal`) and, for comparison, the KL-threshold factor c (the smallest covering
    ≥ 90 %), each with its 5-fold cross-validated coverage and width; ``interval`` names the one the cross-validation
    prefers (coverage ≥ 90 % at the smaller width, else the better coverage)."""
    prefixed = [s for s in point if not s["fallback"]]
    conformal = choose_conformal(prefixed, rows)
    covered, widths = [], []
    for fold in range(FOLDS):
        width = _smallest_threshold([s for s in prefixed if _fold(s["id"]) != fold])
        for s in prefixed:
            if _fold(s["id"]) == fold:
                lo, hi = _threshold_interval(s, width)
                covered.append(lo <= s["truth"] <= hi)
                widths.append(hi - lo)
    threshold = {"width": _smallest_threshold(prefixed), "cv_coverage": round(float(np.mean(covered)), 4),
                 "cv_width": round(float(np.mean(widths)), 4)}
    rank = lambda c: (c["cv_coverage"] < COVERAGE_TARGET,  # noqa: E731
                      -c["cv_coverage"] if c["cv_coverage"] < COVERAGE_TARGET else c["cv_width"])
    chosen = "conformal" if rank(conformal) <= rank(threshold) else "threshold"
    return {"interval": chosen, "calibrated_configurations": len({s["id"] for s in prefixed}),
            "conformal": conformal, "threshold": threshold}


def _early_kwargs(constants: dict[str, Any], tuned: dict[str, Any]) -> dict[str, Any]:
    """early_rows' keywords for tuned early constants (their interval: conformal or the threshold factor)."""
    out = {"gamma": constants["gamma"], "weight": constants["weight"], "factor": constants["beta_factor"],
           "fallback": tuned[constants["base"]]["conformal"], "base": constants["base"]}
    if constants["interval"] == "conformal":
        return out | {"conformal": constants["conformal"]}
    return out | {"width": constants["threshold"]["width"]}


def forecast_rows(rows: list[dict[str, Any]], grid: dict[str, dict[str, Any]], cache: dict[str, Any],
                  tuned: dict[str, Any], budget: float = 0.1) -> dict[str, list[dict[str, Any]]]:
    """Each method's forecast rows with the given constants."""
    e, o = tuned["early"], tuned["early_only"]
    return {"closed_form": closed_rows(rows, cache, "closed_form", conformal=tuned["closed_form"]["conformal"]),
            "posthoc": closed_rows(rows, cache, "posthoc", conformal=tuned["posthoc"]["conformal"]),
            "adjusted": closed_rows(rows, cache, "adjusted", factor=tuned["adjusted"]["beta_factor"],
                                    conformal=tuned["adjusted"]["conformal"]),
            "shifted": closed_rows(rows, cache, "shifted", shift=tuned["shifted"]["shift"],
                                   conformal=tuned["shifted"]["conformal"]),
            "early": early_rows(rows, grid, cache, budget=budget, **_early_kwargs(e, tuned)),
            "early_only": early_rows(rows, grid, cache, budget=budget, **_early_kwargs(o, tuned))} | pilot.forecast_rows(
        rows, grid, cache, tuned)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.forecast.grid import load_grid
    from bench.forecast.run_truth import read_rows

    grid = {e["id"]: e for e in load_grid()}
    all_rows = read_rows()
    rows = [r for r in all_rows if r.get("status") == "ok" and r["id"] in grid]
    failed = [r for r in all_rows if r.get("status") != "ok"]
    cache = curves(grid, rows)
    tuning = [r for r in rows if r["split"] == "tuning"]
    reporting = [r for r in rows if r["split"] == "reporting"]
    tuned = tune(tuning, grid, cache)
    TUNED.write_text(json.dumps(tuned, indent=1) + "\n", encoding="utf-8")
    on_tuning = forecast_rows(tuning, grid, cache, tuned)
    on_reporting = forecast_rows(reporting, grid, cache, tuned)
    configs = lambda rs: len({r["id"] for r in rs})  # noqa: E731
    n_pairs, agree, spread = seed_spread(rows)
    out = [f"Rows: {len(rows)} finished runs of {configs(rows)} configurations (of {len(grid)} in the grid); "
           f"tuning split {len(tuning)} runs / {configs(tuning)} configurations, reporting split {len(reporting)} "
           f"runs / {configs(reporting)} configurations; {len(failed)} failed runs left out. Each (configuration, "
           "seed) is one row: its measured count is the truth the forecast is scored against.", "",
           f"Seed spread: of {n_pairs} configurations with two seeds, the seeds' counts agree exactly on "
           f"{_pct(agree)}, mean |difference| {_num(spread)} dimensions (a forecast of one number per configuration "
           "cannot beat this).", "",
           f"Constants tuned on the tuning split: `{json.dumps(tuned)}`.", "",
           "### Reporting split (the headline)", "", *table(on_reporting), "",
           "### Tuning split (where the constants were chosen)", "", *table(on_tuning), ""]
    out += ["### Early training at other budgets (reporting split)", "",
            "| budget | rows | MAE | exact | within ±1 | coverage | mean cost | fell back to the closed form |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    e = tuned["early"]
    for budget in BUDGETS:
        scored = early_rows(reporting, grid, cache, budget=budget, **_early_kwargs(e, tuned))
        m = metrics(scored)
        out.append(f"| {_pct(budget)} | {m['n']} | {_num(m['mae'])} | {_pct(m['exact'])} | {_pct(m['within1'])} | "
                   f"{_pct(m['coverage'])} | {_pct(m['cost'])} | {sum(s['fallback'] for s in scored)} |")
    out += ["", "### Leave one dataset out (tuned without the group, scored on it; both splits)", "",
            "| held-out group | rows | " + " | ".join(f"{m}: MAE / ±1 / coverage / width" for m in METHODS) + " |",
            "| --- | ---: |" + " ---: |" * len(METHODS)]
    for group in sorted({r["group"] for r in rows}):
        held = [r for r in rows if r["group"] == group]
        rest = [r for r in rows if r["group"] != group]
        if not held or not rest:
            continue
        scored = forecast_rows(held, grid, cache, tune(rest, grid, cache))
        cells = []
        for method in METHODS:
            m = metrics(scored[method])
            cells.append(f"{_num(m['mae'])} / {_pct(m['within1'])} / {_pct(m['coverage'])} / {_num(m['width'], 1)}")
        out.append(f"| {group} | {len(held)} | " + " | ".join(cells) + " |")
    out += ["", "### Where the forecasts miss: every method on the reporting split, by regime", ""]
    for field in ("kind", "arch", "likelihood", "schedule", "data", "budget", "activation", "heads"):
        out += breakdown(on_reporting, reporting, field) + [""]
    truth_shape = {"all collapsed": 0, "partial": 0, "all active": 0}
    for r in rows:
        shape = ("all collapsed" if r["n_active"] == 0 else
                 "all active" if r["n_active"] == r["latent_size"] else "partial")
        truth_shape[shape] += 1
    eta_estimates(grid, rows, cache)
    out += ["### The learned η_dec: forecast against measured (|log(estimate / measured η_dec)|)", "",
            *eta_table(rows, cache), ""]
    out += [f"Measured counts (all rows): {truth_shape['all collapsed']} all collapsed, {truth_shape['partial']} "
            f"partial, {truth_shape['all active']} all active.", ""]
    # what collapsekit forecast and the package return, by the method name a Forecast carries (``early``: the
    # trajectory alone, the shipped variant), and the post-hoc closed form that diagnose's theory column shows
    shipped = {"closed_form": "closed_form", "posthoc": "posthoc", "adjusted": "adjusted", "shifted": "shifted",
               "early": "early_only"}
    accuracy = {name: {k: round(v, 4) for k, v in metrics(on_reporting[method]).items() if k != "log_kl"}
                | {"configurations": configs(reporting)} | {"regimes": regime_accuracy(on_reporting[method], reporting)}
                for name, method in shipped.items()}
    ACCURACY.write_text(json.dumps(accuracy, indent=1) + "\n", encoding="utf-8")
    text = "\n".join(out)
    (RESULTS / "scores.md").write_text(text + "\n", encoding="utf-8")
    with open(RESULTS / "forecasts.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "seed", "split", "method", "forecast", "lo", "hi", "measured", "cost_fraction"])
        for split, scored in (("tuning", on_tuning), ("reporting", on_reporting)):
            for method in METHODS:
                for s in scored[method]:
                    writer.writerow([s["id"], s["seed"], split, method, s["pred"], s["lo"], s["hi"], s["truth"],
                                     f"{s['cost']:.3f}"])
    for method in METHODS:
        figure(on_reporting, method, ROOT / "docs" / f"forecast_{method}.png")
    if DOC.is_file():
        doc = DOC.read_text(encoding="utf-8")
        if BEGIN in doc and END in doc:
            head, rest = doc.split(BEGIN, 1)
            DOC.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
