"""What every preset shares.

- :class:`Context`: the scale, the data, the output directory and the budgets of one preset run;
- :func:`train_grid`: a grid of configurations trained through
  :func:`~collapsekit.experiments.sweep.run_sweep` (batched where it can, resumable);
- :func:`measure`: the diagnostics of one trained run (KL per dimension, measured active
  dimensions, importance-sampled NLL, Burda active units);
- :func:`theory_curve`: the closed form's count of active dimensions over a fine grid, from one
  spectrum;
- :class:`Verdict` and :func:`trend`: the paper's qualitative claim judged from measured numbers;
- :class:`PresetResult` and :func:`write_outputs`: ``table.csv``, ``table.md``, ``result.json``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsekit._io import atomic_path, jsonable
from collapsekit.errors import CollapsekitError, ParameterError
from collapsekit.experiments.sweep import POINTS_DIR, TRACEBACK_FILE

if TYPE_CHECKING:
    from torch import nn

    from collapsekit.experiments.reproduction.preset import Preset
    from collapsekit.theory import Moments
    from collapsekit.training import RunConfig, TrainingData

#: Importance samples per example for the NLL: few at quick scale (a rough estimate), the
#: diagnostics' default at paper scale.
QUICK_SAMPLES, PAPER_SAMPLES = 100, 1000
#: Examples the quick scale evaluates (the NLL costs S decoder passes per example).
QUICK_EVAL_EXAMPLES = 500
#: The quick scale's MNIST: the 10,000 digits bundled with collapsekit.
QUICK_MNIST = "mnist10k"
#: A β or η "near" a threshold: within this factor of it (the quick scale leaves such values out,
#: since training converges slowest there; see :func:`well_separated`).
QUICK_MARGIN = 1.15

HALVED_NOTE = ("β scaling: the paper's script trains ‖y−μ‖²/η_dec² + β·KL, i.e. true β = nominal/2; we use "
               "the true β (‖y−μ‖²/(2η_dec²) + const + β·KL) and train each setting at nominal/2, the model the "
               "paper actually trained: the paper's nominal β=2 is our β=1. The 'paper β' column keeps the "
               "nominal value.")
TRUE_BETA_NOTE = ("β scaling: the paper's linear script already uses the consistent scaling (its β is the true "
                  "β), so the paper's values are used as they are.")


# -- the context of one preset run ------------------------------------------------------------------
@dataclass
class Context:
    """Everything a preset's runner needs to know about this run.

    Attributes
    ----------
    preset : Preset
        The preset being run.
    scale : {"quick", "paper"}
    out_dir : Path
        Its output directory (training runs go under ``out_dir/runs``).
    data : str or None
        The user's ``--data`` spec (MNIST presets), or None for the scale's default.
    workers : int or None
        Training processes at once (``run_sweep``'s ``workers``).
    samples : int or None
        Importance samples per example for the NLL (None: 100 quick, 1000 paper).
    progress : bool
        Show the sweeps' plan and progress bars on stderr.
    device : str or None
        Where the runs train and are measured: ``cpu``, ``cuda``, or ``auto``/None (CUDA when available).
    notes : list of str
        Lines every output repeats (what was run, and how it differs from the paper).
    """

    preset: Preset
    scale: str
    out_dir: Path
    data: str | None = None
    workers: int | None = None
    samples: int | None = None
    progress: bool = False
    device: str | None = None
    notes: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def quick(self) -> bool:
        """True at quick scale."""
        return self.scale == "quick"

    @property
    def importance_samples(self) -> int:
        """S of the importance-sampled NLL."""
        return self.samples if self.samples is not None else (QUICK_SAMPLES if self.quick else PAPER_SAMPLES)

    @property
    def accelerator(self) -> str:
        """Fabric's accelerator for ``device``: ``cuda`` (sweeps give each worker its own GPU) or ``cpu``."""
        from collapsekit._validation import resolve_device

        return "cuda" if resolve_device(self.device).type == "cuda" else "cpu"

    def note(self, text: str) -> None:
        """Add a line to the notes of every output (once)."""
        if text not in self.notes:
            self.notes.append(text)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per key for this run (data, spectra)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- data ---------------------------------------------------------------------------------
    def mnist(self) -> str:
        """The MNIST spec: ``--data``; else at quick scale the bundled mnist10k; the paper scale needs
        the full MNIST and says how to get it."""
        if self.data:
            return self.data
        if not self.quick:
            raise ParameterError(f"reproduce {self.preset.name} --scale paper trains on the full MNIST: pass "
                                 "--data mnist:DIR (collapsekit.data.download_mnist(DIR) fetches it)")
        return QUICK_MNIST

    def count(self, spec: str) -> int:
        """Number of examples a spec holds (loaded once)."""
        from collapsekit.data import load

        return int(self.cached(f"count:{spec}", lambda: load(spec).n))

    def subset(self, spec: str, n: int) -> dict[str, Any]:
        """Data-section keys that keep a seeded subset of about ``n`` examples (all when fewer)."""
        total = self.count(spec)
        if total <= n:
            return {}
        return {"part": "train", "test_fraction": round(1.0 - n / total, 6)}

    def training_data(self, config: RunConfig) -> TrainingData:
        """The data a configuration trains on (loaded once per data setting)."""
        from collapsekit.training import load_training_data

        key = json.dumps(["train", config.data.model_dump(mode="json"), config.train.seed, config.model.kind])
        return self.cached(key, lambda: load_training_data(config))

    def eval_data(self, config: RunConfig, max_examples: int | None = None) -> tuple[TrainingData, str]:
        """The data the diagnostics run on, and a phrase saying which.

        Quick scale: the first ``max_examples`` (default 500) training examples. Paper scale: the
        MNIST test set when the spec is ``mnist:DIR`` and DIR holds it, else the training data.
        """
        from collapsekit.training import TrainingData, load_training_data

        limit = max_examples if max_examples is not None else (QUICK_EVAL_EXAMPLES if self.quick else None)
        test_spec = None if self.quick else _test_spec(config.data.spec)

        def make() -> tuple[TrainingData, str]:
            if test_spec is not None:
                data = load_training_data(config.with_overrides({"data.spec": test_spec, "data.part": None}))
                where = "test"
            else:
                data, where = self.training_data(config), "training"
            if limit is not None and data.n > limit:
                data = TrainingData(x=data.x[:limit], y=None if data.y is None else data.y[:limit],
                                    image_side=data.image_side, name=data.name)
                return data, f"the first {limit:,} {where} examples"
            return data, f"the {where} data ({data.n:,} examples)"

        key = json.dumps(["eval", config.data.model_dump(mode="json"), config.train.seed, config.model.kind, limit,
                          test_spec])
        return self.cached(key, make)


def _test_spec(spec: str) -> str | None:
    """``mnist:DIR`` → ``mnist:DIR:t10k`` when DIR holds the test set; None otherwise."""
    if not spec.startswith("mnist:") or spec.rsplit(":", 1)[-1] in ("train", "t10k", "test"):
        return None
    from collapsekit.data import load

    candidate = f"{spec}:t10k"
    try:
        load(candidate)
    except CollapsekitError:
        return None
    return candidate


def run_config(values: Mapping[str, Any]) -> RunConfig:
    """A validated :class:`RunConfig` from nested sections (a one-line ParameterError otherwise)."""
    from collapsekit.training import RunConfig

    return RunConfig.parse(dict(values))


def train_section(ctx: Context, *, epochs: int, seed: int, batch_size: int = 128) -> dict[str, Any]:
    """The ``train`` section every preset uses: no progress bars, no collapse monitor (each run is
    diagnosed once at the end instead), the scale's accelerator."""
    return {"epochs": epochs, "batch_size": batch_size, "seed": seed, "accelerator": ctx.accelerator,
            "progress": False, "monitor": False}


# -- training ----------------------------------------------------------------------------------------
@dataclass
class Point:
    """One trained configuration of a grid.

    Attributes
    ----------
    label : str
        The grid it belongs to (its directory under ``out_dir/runs``).
    settings : dict
        Its grid values.
    config : RunConfig
        Its resolved configuration.
    run_dir : Path
        Its run directory (``config.yaml``, ``metrics.jsonl``, ``checkpoints/``).
    row : dict
        Its row of the sweep's ``summary.csv`` (``n_active_predicted``, ``theory``, ``loss_nats``, ...).
    """

    label: str
    settings: dict[str, Any]
    config: RunConfig
    run_dir: Path
    row: dict[str, Any]


def train_grid(ctx: Context, label: str, base: RunConfig, grid: Mapping[str, Sequence[Any]], seed: int) -> list[Point]:
    """Train ``grid`` (one seed) into ``out_dir/runs/label``; a rerun skips what is done.

    Several points train through :func:`~collapsekit.experiments.sweep.run_sweep` (worker
    processes, batched where it can). A grid of one point trains here, in this process, with
    :class:`~collapsekit.training.Trainer` (see :func:`train_one`).

    Raises
    ------
    CollapsekitError
        When a run failed (the sweep's one-line error; rerunning retries it).
    """
    from collapsekit.experiments.sweep import expand_grid, point_config, run_sweep
    from collapsekit.training import RunConfig
    from collapsekit.training.trainer import CONFIG_FILE

    out = ctx.out_dir / "runs" / label
    single = expand_grid(grid, [seed])
    if len(single) == 1:
        return [train_one(ctx, label, point_config(base, single[0].settings, seed), settings=single[0].settings)]
    # The presets draw their own figure from one spectrum (theory_curve), not the sweep's.
    result = run_sweep(base, grid, [seed], out, workers=ctx.workers, progress=ctx.progress, plot=False)
    if result.failed:
        first = result.failed[0]
        raise CollapsekitError(f"{ctx.preset.name}: {len(result.failed)} training run(s) failed, first "
                               f"{label}/{first['point']}: {first['error']} (traceback: "
                               f"{out / POINTS_DIR / first['point'] / TRACEBACK_FILE}; rerun to retry)")
    points = []
    for row in result.rows:
        run_dir = out / POINTS_DIR / row["point"]
        points.append(Point(label=label, settings={key: row[key] for key in grid},
                            config=RunConfig.load(run_dir / CONFIG_FILE), run_dir=run_dir, row=row))
    return points


def train_one(ctx: Context, label: str, config: RunConfig, *, settings: Mapping[str, Any] | None = None) -> Point:
    """Train one configuration into ``out_dir/runs/label`` in this process; a rerun resumes it
    (from its last checkpoint, or not at all when it finished).

    A sweep would run a lone point in a worker process that takes every core, and a tiny model's
    steps on several threads of a busy machine are many times slower than on one.
    """
    from collapsekit.experiments.sweep import predicted_active
    from collapsekit.training import Trainer

    run_dir = ctx.out_dir / "runs" / label
    config = config.with_overrides({"train.progress": False})
    data = ctx.training_data(config)
    result = Trainer(config, run_dir, resume=True, data=data).fit()
    predicted, theory = predicted_active(config, data)
    row = {"n_active_predicted": predicted, "theory": theory, "loss_nats": float(result.metrics[-1]["loss"])}
    return Point(label=label, settings=dict(settings or {}), config=config, run_dir=run_dir, row=row)


def load_model(config: RunConfig, run_dir: Path, data: TrainingData) -> nn.Module:
    """The trained model of a run directory (its latest checkpoint), in eval mode, on the CPU."""
    from collapsekit.training.checkpoint import latest_checkpoint, load_checkpoint
    from collapsekit.training.trainer import CHECKPOINT_DIR, build_model_from_config

    checkpoint = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if checkpoint is None:
        raise CollapsekitError(f"{run_dir} holds no checkpoint: its training did not finish; rerun the preset")
    model = build_model_from_config(config, data)
    load_checkpoint(checkpoint).restore_model(model)
    return model.eval()


# -- measurement -------------------------------------------------------------------------------------
def measure(ctx: Context, point: Point, *, max_examples: int | None = None) -> dict[str, Any]:
    """The diagnostics of one trained run, at its top latent level (z, or z₂ of a hierarchy).

    Returns
    -------
    dict
        ``n_active_measured`` (the headline count, :mod:`collapsekit.activity`: dimensions with mean KL
        ≥ 0.01 nats on the final weights and ``evaluated_on``), ``kl_nats`` (their summed KL),
        ``kl_per_dim`` (descending), ``nll_nats`` (importance-sampled −log p, S =
        ``ctx.importance_samples``), ``active_units`` (Burda et al., Var_x E[z_j] > 0.01),
        ``latent_size``, ``kl_levels_nats`` (KL of every level, bottom to top), ``evaluated_on``,
        and from the sweep: ``n_active_predicted``, ``theory``, ``loss_nats`` (last epoch).
    """
    from collapsekit.diagnostics import diagnose_model

    data, where = ctx.eval_data(point.config, max_examples)
    model = load_model(point.config, point.run_dir, data)
    # Few bootstrap resamples: the mutual information is not reported here. On the training device (the
    # NLL is S decoder passes per example); the data go there batch by batch.
    report = diagnose_model(model, data.x, data.y, n_samples=ctx.importance_samples, seed=0, mi_bootstrap=10,
                            mi_per_dim_queries=200, device=ctx.accelerator)
    top = report.levels[-1]
    kl = np.asarray(top.kl_per_dim, dtype=float)
    return {"n_active_predicted": point.row.get("n_active_predicted"), "theory": point.row.get("theory"),
            "n_active_measured": top.n_active, "latent_size": int(kl.size),
            "kl_nats": float(kl.sum()), "kl_per_dim": [float(v) for v in np.sort(kl)[::-1]],
            "nll_nats": -float(report.log_likelihood) if report.log_likelihood is not None else None,
            "active_units": int(top.active_units), "kl_levels_nats": [float(level.rate) for level in report.levels],
            "loss_nats": point.row.get("loss_nats"), "evaluated_on": where}


# -- the closed form over a fine grid ----------------------------------------------------------------
def spectrum_moments(ctx: Context, config: RunConfig) -> Moments:
    """Small moments with the same leading spectrum as ``data``'s, for counting active dimensions.

    Which dimensions collapse depends only on the θ paired with the latent dimensions, so the
    prediction on these moments gives the same counts as on the full ones, without an
    eigendecomposition of the data's moments per hyper-parameter value.
    """
    from collapsekit.diagnostics.theory_compare import TheorySetting, moments_for
    from collapsekit.theory import Moments

    k = config.model.latent_dims[0]                       # one-level latent, or z₁ of a hierarchy

    def make() -> Moments:
        data = ctx.training_data(config)
        moments = moments_for(TheorySetting.from_config(config), data.x, data.y)
        if config.model.kind == "cvae":
            theta = np.clip(moments.cvae_spectrum()[:k], 0.0, None)
            return Moments(xx=np.eye(1), xy=np.zeros((1, theta.size)), yy=np.diag(theta))
        return Moments(xx=np.diag(moments.vae_spectrum()[:k] ** 2))

    key = json.dumps(["spectrum", config.data.model_dump(mode="json"), config.train.seed, config.model.kind, k])
    return ctx.cached(key, make)


def theory_curve(base: RunConfig, key: str, values: Sequence[float] | np.ndarray, seed: int,
                 moments: Moments) -> np.ndarray:
    """Predicted active (non-collapsed) top-level dimensions at each of ``values`` of grid key ``key``
    (NaN where the theory gives no number)."""
    from collapsekit.experiments.sweep import point_config, predicted_active

    counts = []
    for value in values:
        try:
            count, _ = predicted_active(point_config(base, {key: float(value)}, seed), moments)
        except CollapsekitError:
            count = None
        counts.append(np.nan if count is None else count)
    return np.asarray(counts, dtype=float)


def fine_values(values: Sequence[float], log: bool, n: int = 240) -> np.ndarray:
    """A fine grid a little beyond ``values`` (so the ends of a step curve show)."""
    low, high = float(min(values)), float(max(values))
    if log:
        return np.geomspace(low / 1.4, high * 1.4, n)
    pad = 0.06 * (high - low or 1.0)
    return np.linspace(max(low - pad, 1e-6), high + pad, n)


def well_separated(candidates: Sequence[float], critical: Sequence[float] | np.ndarray, *, count: int,
                   margin: float = QUICK_MARGIN, regimes: Sequence[float] = ()) -> list[float]:
    """Up to ``count`` of ``candidates`` at least a factor ``margin`` from every critical value,
    covering as many different predicted counts (and ``regimes``) as possible.

    Training reaches the closed-form optimum slowest near a threshold (a dimension with KL
    ½·ln(θ/βη²) of a few hundredths of a nat keeps shrinking for thousands of steps), so a short
    run can only be held to the prediction away from it. Used at quick scale only.

    Parameters
    ----------
    candidates : sequence of float
        The paper's grid.
    critical : sequence of float
        Each dimension's critical value (it collapses at and above it).
    count : int
        How many values at most.
    margin : float
        The factor a value must keep from every critical value and regime boundary.
    regimes : sequence of float
        Boundaries where the closed form changes regime without a count changing (the MHVAE's
        β₂ = β₁σ₁²/η_dec²): values on either side count as different groups.
    """
    crit = np.asarray([c for c in critical if np.isfinite(c) and c > 0], dtype=float)
    bounds = np.asarray([*crit, *regimes], dtype=float)
    groups: dict[tuple[int, int], tuple[float, float]] = {}
    for value in candidates:
        distance = np.min(np.abs(np.log(value / bounds))) if bounds.size else np.inf
        if distance < math.log(margin):
            continue
        # collapsed at and above the critical value; the regime is which side of each boundary
        group = (int(np.count_nonzero(crit > value)), sum(value > r for r in regimes))
        if group not in groups or distance > groups[group][1]:
            groups[group] = (float(value), float(distance))
    if not groups:
        raise CollapsekitError("no value of the paper's grid is clear of the thresholds on this data")
    keys = sorted(groups)
    if len(keys) > count:                                   # spread over the available counts
        keys = [keys[round(i * (len(keys) - 1) / (count - 1))] for i in range(count)] if count > 1 else keys[:1]
    return sorted(groups[k][0] for k in dict.fromkeys(keys))


# -- verdicts ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The paper's qualitative claim judged from the measured numbers.

    Attributes
    ----------
    holds : bool or None
        True: the measurements show the claimed effect; False: they do not (or show the
        opposite); None: inconclusive (the settings span no change, even in the prediction).
    evidence : str
        The numbers behind it, in a sentence.
    """

    holds: bool | None
    evidence: str

    @property
    def word(self) -> str:
        """``holds``, ``does not hold`` or ``inconclusive``."""
        return {True: "holds", False: "does not hold", None: "inconclusive"}[self.holds]


def trend(xs: Sequence[float], ys: Sequence[float], direction: str) -> str:
    """How ``ys`` move as ``xs`` grow: ``"as claimed"`` (never against ``direction``, "down" or "up",
    and a net change), ``"flat"`` (no change at all) or ``"against"``."""
    ordered = [y for _, y in sorted(zip(xs, ys), key=lambda pair: pair[0])]
    steps = np.diff(np.asarray(ordered, dtype=float))
    if not np.any(steps):
        return "flat"
    sign = -1.0 if direction == "down" else 1.0
    return "against" if np.any(sign * steps < 0) else "as claimed"


def arrow(values: Sequence[Any]) -> str:
    """``16→14→6``."""
    return "→".join(fmt(v) for v in values)


def combine(parts: Sequence[tuple[bool | None, str]]) -> Verdict:
    """One verdict from several sub-claims: does not hold when one fails; holds when at least one
    holds and the others are uninformative (None: neither the theory nor the measurement changes
    along them); inconclusive when none is informative."""
    holds = [h for h, _ in parts]
    overall: bool | None = False if any(h is False for h in holds) else (True if any(holds) else None)
    return Verdict(overall, "; ".join(text for _, text in parts))


def trend_claim(name: str, xs: Sequence[float], measured: Sequence[int], predicted: Sequence[Any],
                direction: str, *, what: str = "active dims") -> tuple[bool | None, str]:
    """A sub-claim "``what`` go ``direction`` as ``name`` grows", judged on measured values.

    Returns True (as claimed), False (against it, or no change where the theory's ``predicted``
    counts change) or None (no change, and none predicted: the settings cannot tell).
    """
    seen = trend(xs, measured, direction)
    order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
    shown = f"{name} {arrow([xs[i] for i in order])}: {what} {arrow([measured[i] for i in order])}"
    known = [p for p in predicted if p is not None]
    if len(known) == len(predicted):
        shown += f" (theory {arrow([predicted[i] for i in order])})"
    if seen == "as claimed":
        return True, shown
    if seen == "flat":
        if len(known) == len(predicted) and trend(xs, known, direction) == "flat":
            return None, shown + " — no change measured or predicted"
        return False, shown + " — no change measured"
    return False, shown + " — moves against the claim"


# -- results and output files ------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """A column of a preset's table: row key, header (with units) and significant digits."""

    key: str
    header: str
    digits: int = 4


#: Columns every training preset shows after its own.
MEASURE_COLUMNS: tuple[Column, ...] = (
    Column("n_active_predicted", "active dims predicted"),
    Column("n_active_measured", "active dims measured (KL ≥ 0.01 nats)"),
    Column("latent_size", "latent size"),
    Column("kl_nats", "KL (nats)"),
    Column("nll_nats", "NLL (nats)"),
    Column("active_units", "AU (Burda)"),
    Column("theory", "theory"),
)


@dataclass
class PresetResult:
    """What a preset run produced: its table, figure, verdict and notes."""

    name: str
    paper_id: str
    title: str
    description: str
    claim: str
    scale: str
    data: str
    out_dir: Path
    rows: list[dict[str, Any]]
    columns: list[Column]
    verdict: Verdict
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    figure: Path | None = None
    seconds: float = 0.0

    def sentence(self) -> str:
        """The verdict as one sentence."""
        return f"The paper's claim {self.verdict.word} at {self.scale} scale: {self.verdict.evidence}."

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return jsonable({
            "preset": self.name, "paper_id": self.paper_id, "title": self.title, "description": self.description,
            "claim": self.claim, "scale": self.scale, "data": self.data, "settings": self.settings,
            "verdict": {"holds": self.verdict.holds, "verdict": self.verdict.word, "evidence": self.verdict.evidence,
                        "sentence": self.sentence()},
            "notes": self.notes, "columns": [{"key": c.key, "header": c.header} for c in self.columns],
            "rows": self.rows, "figure": None if self.figure is None else self.figure.name,
            "seconds": round(self.seconds, 1)})


def for_preset(ctx: Context, *, data: str, rows: list[dict[str, Any]], columns: Sequence[Column], verdict: Verdict,
               settings: Mapping[str, Any], figure: Path | None) -> PresetResult:
    """A :class:`PresetResult` with the preset's identity and the context's notes."""
    p = ctx.preset
    return PresetResult(name=p.name, paper_id=p.paper_id, title=p.title, description=p.description, claim=p.claim,
                        scale=ctx.scale, data=data, out_dir=ctx.out_dir, rows=rows, columns=list(columns),
                        verdict=verdict, notes=list(ctx.notes), settings=dict(settings), figure=figure)


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: integers as they are, floats to ``digits`` significant digits, – for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{float(value):.{digits}g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A GitHub-flavoured Markdown table."""
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(escape(c.header) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(escape(fmt(row.get(c.key), c.digits)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def markdown_body(result: PresetResult, figure_link: str | None) -> str:
    """The part of ``table.md`` the combined report repeats: claim, notes, figure, table, verdict."""
    parts = [result.description, "", f"**Paper's claim.** {result.claim}", "",
             f"**Scale:** {result.scale}. **Data:** {result.data}."]
    if result.notes:
        parts += ["", *[f"- {note}" for note in result.notes]]
    if figure_link:
        parts += ["", f"![{result.paper_id} {result.name}]({figure_link})"]
    parts += ["", markdown_table(result.rows, result.columns), "", f"**Verdict: {result.verdict.word}.** "
              f"{result.sentence()}"]
    return "\n".join(parts)


def write_outputs(result: PresetResult) -> dict[str, Path]:
    """Write ``table.csv``, ``table.md`` and ``result.json`` into the preset's directory (atomically)."""
    out = result.out_dir
    paths = {"csv": out / "table.csv", "md": out / "table.md", "json": out / "result.json"}
    with atomic_path(paths["csv"]) as temporary, open(temporary, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([c.key for c in result.columns])
        writer.writerows([_csv_cell(row.get(c.key)) for c in result.columns] for row in result.rows)
    figure = result.figure.name if result.figure is not None else None
    text = f"# {result.paper_id} · {result.name}: {result.title}\n\n{markdown_body(result, figure)}\n"
    with atomic_path(paths["md"]) as temporary:
        temporary.write_text(text, encoding="utf-8")
    with atomic_path(paths["json"]) as temporary:
        temporary.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
