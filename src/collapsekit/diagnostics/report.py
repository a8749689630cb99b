"""The result of a diagnosis: :class:`CollapseReport`, one :class:`LevelReport` per latent level.

Everything here is plain data (lists and floats, nats throughout) so that a report round-trips
through JSON (``to_dict`` / ``from_dict``) and every renderer (terminal, Markdown, HTML) reads the
same numbers. Large per-example arrays (log-likelihood and ELBO of each example) are kept on the
object for the Python user but summarised in JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from collapsekit._io import atomic_path
from collapsekit.activity import DEFINITION, active_mask

#: Version of the JSON layout written by :meth:`CollapseReport.to_dict`. Format 2: each level's ``active`` and
#: ``n_active`` follow the one headline rule (:mod:`collapsekit.activity`); the (ε, δ)-collapse flags that
#: format 1 called ``collapsed`` are ``eps_delta_collapsed``.
REPORT_FORMAT = 2


@dataclass
class TheoryComparison:
    """The linear theory's prediction for one latent level, beside what was measured.

    Latent dimensions are identifiable only up to permutation, so predicted and measured values
    are compared **sorted by KL, largest first** (``measured_sorted`` is the report's own
    ``kl_per_dim`` sorted the same way).

    Attributes
    ----------
    model, theorem : str
        Which closed form (``"cvae"``, "Theorem 2", ...).
    exact : bool
        True for a linear model (the theory is exact); False otherwise (a linear-theory estimate).
    label : str
        ``"exact"`` or ``"linear-theory estimate"``: what every renderer prints beside the numbers.
    kl_per_dim : list of float
        Predicted KL per dimension, nats, sorted descending.
    measured_sorted : list of float
        Measured KL per dimension, nats, sorted descending.
    n_active_predicted, n_active_measured : int
        The headline count (:mod:`collapsekit.activity`: mean KL ≥ 0.01 nats) applied to the predicted and
        to the measured KL per dimension.
    critical_beta : list of float
        β above which each predicted dimension collapses (same order as ``kl_per_dim``).
    hyperparameters : dict
        The values the prediction used (β, η_enc, η_dec, ...).
    interval : [int, int], optional
        For an estimate (not exact): the predicted counts at β multiplied and divided by the post-hoc closed
        form's interval factor (tuned on the benchmark, docs/forecast.md); None where the theory is exact.
    benchmark : dict, optional
        For a nonlinear model: that closed form's measured accuracy on the benchmark's reporting split
        (:data:`collapsekit.diagnostics.forecast_accuracy.MEASURED`); None otherwise.
    """

    model: str
    theorem: str
    exact: bool
    label: str
    kl_per_dim: list[float]
    measured_sorted: list[float]
    n_active_predicted: int
    n_active_measured: int
    critical_beta: list[float] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    interval: list[int] | None = None
    benchmark: dict[str, Any] | None = None

    @property
    def qualifier(self) -> str:
        """What qualifies an estimate's count, e.g. " (interval 1–3; within ±1 on 49 % of comparable benchmark
        runs)"; "" for an exact prediction."""
        parts = []
        if self.interval is not None:
            parts.append(f"interval {self.interval[0]}–{self.interval[1]}")
        if self.benchmark is not None:
            from collapsekit.diagnostics.forecast_accuracy import quote

            parts.append(str(quote(self.benchmark)))
        return f" ({'; '.join(parts)})" if parts else ""

    @property
    def agrees(self) -> bool:
        """Whether the predicted and measured numbers of active dimensions are equal."""
        return self.n_active_predicted == self.n_active_measured

    def difference(self) -> str:
        """Where the measurement departs from the prediction, in words ("" when they agree).

        Extra active dimensions that carry little KL are typical of a run that has not converged:
        near the collapse threshold the KL of a dimension the theory collapses decays slowly.
        """
        predicted, measured = self.n_active_predicted, self.n_active_measured
        if predicted == measured:
            return ""
        if measured > predicted:
            extra = self.measured_sorted[predicted:measured]
            text = (f"{measured - predicted} dimension(s) the theory collapses were measured active, with "
                    f"{_span(extra)} nats")
            if max(extra) < 0.1:
                text += ("; so little KL suggests training has not converged (near the threshold a collapsing "
                         "dimension's KL decays slowly): train longer to tell")
            return text
        missing = self.kl_per_dim[measured:predicted]
        return (f"{predicted - measured} dimension(s) the theory keeps active were measured collapsed (predicted "
                f"{_span(missing)} nats)")


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g}–{high:.3g}"


@dataclass
class LevelReport:
    """Every measurement of one latent level (``"z"``, or ``"z1"``, ``"z2"``, ... in a hierarchy).

    Attributes
    ----------
    name : str
        The level.
    kl_per_dim : list of float
        E_x KL(q(z_j|x) ‖ p(z_j)) per dimension, nats (the per-dimension rate). Exact (analytic)
        for a one-level model and the top of a hierarchy; for a lower level of a hierarchy it is
        the paired Monte Carlo estimate E[log q(z_l|·) − log p(z_l|z_{l+1})] (``kl_exact`` False).
    rate : float
        Σ_j kl_per_dim, nats.
    variance_of_mean : list of float
        Var_x E_q[z_j] per dimension (Burda et al.'s activity A_j; unbiased variance).
    active_units : int
        Burda et al.'s count: dimensions with ``variance_of_mean`` > ``active_units_threshold``.
    active_fraction : float
        The paper's "AU": the fraction of (example, dimension) pairs with KL ≥ ``kl_threshold``.
    active_fraction_per_dim : list of float
        The same fraction for each dimension separately.
    active : list of bool
        Per dimension, the headline rule (:mod:`collapsekit.activity`): ``kl_per_dim`` ≥ 0.01 nats.
    n_active : int
        The headline count: how many dimensions are active.
    eps_delta_collapsed : list of bool
        Per dimension: (ε, δ)-collapsed (Lucas et al.): P_x[KL_j(x) < ε] ≥ 1 − δ.
    collapse_fraction : dict
        {ε: fraction of dimensions (ε, δ)-collapsed} for several ε (keys are strings in JSON).
    variable_types : list of str
        Per dimension ``"active"``, ``"passive"`` or ``"mixed"`` (Bonheme & Grzes; variances scaled
        by the prior variance).
    mean_sampled_correlation : dict
        Mean absolute off-diagonal correlation of the mean and of the sampled representations,
        overall and per variable type.
    mutual_info : float
        Full-dataset estimate of I(x; z) (aggregate posterior over all N examples), nats.
    mutual_info_ci : list of float
        Bootstrap confidence interval [low, high] of ``mutual_info``, nats.
    mutual_info_per_dim : list of float
        The same estimator on each dimension alone, nats (these do not sum to the joint value).
    mutual_info_minibatch : float
        He et al.'s minibatch estimator on minibatches of ``minibatch_size`` examples in a seeded random
        order, nats; it cannot exceed ``mutual_info_ceiling`` = log B.
    mutual_info_minibatch_ci : list of float
        Its Monte Carlo interval [low, high] (± 1.96 standard errors over the batches), nats; empty with
        a single batch.
    metrics : dict
        The registered metrics (:mod:`collapsekit.diagnostics.metric_registry`): name → one number, or one per
        dimension. Empty (and left out of the JSON) when none is registered.
    latent_shape : list of int
        A spatial latent's shape per example, (C, h, w); empty for a vector latent (then nothing below is set).
        The per-dimension fields above list its C·h·w units channel-major.
    kl_per_channel : list of float
        Per channel, the sum of its positions' ``kl_per_dim`` (the KL of the channel's whole map), nats.
    kl_per_position : list
        Per position (nested h × w lists), the sum over channels of ``kl_per_dim``, nats.
    active_channels : list of bool
        Per channel, the headline rule on ``kl_per_channel``.
    n_active_channels : int or None
        The headline count of a spatial latent: active channels.
    """

    name: str
    latent_dim: int
    kl_per_dim: list[float]
    rate: float
    kl_exact: bool
    variance_of_mean: list[float]
    active_units: int
    active_fraction: float
    active_fraction_per_dim: list[float]
    active: list[bool]
    n_active: int
    eps_delta_collapsed: list[bool]
    collapse_fraction: dict[str, float]
    variable_types: list[str]
    mean_sampled_correlation: dict[str, Any]
    mutual_info: float
    mutual_info_ci: list[float]
    mutual_info_per_dim: list[float]
    mutual_info_minibatch: float
    mutual_info_ceiling: float
    minibatch_size: int
    prior_std: float
    active_units_threshold: float = 0.01
    kl_threshold: float = 0.01
    epsilon: float = 0.01
    delta: float = 0.01
    mutual_info_minibatch_ci: list[float] = field(default_factory=list)
    theory: TheoryComparison | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    latent_shape: list[int] = field(default_factory=list)
    kl_per_channel: list[float] = field(default_factory=list)
    kl_per_position: list[Any] = field(default_factory=list)
    active_channels: list[bool] = field(default_factory=list)
    n_active_channels: int | None = None

    @property
    def headline(self) -> tuple[int, int, str]:
        """(active, of how many, of what): channels for a spatial latent, dimensions otherwise."""
        if self.n_active_channels is not None:
            return self.n_active_channels, len(self.kl_per_channel), "channels"
        return self.n_active, self.latent_dim, "dimensions"

    @property
    def collapsed(self) -> list[bool]:
        """Per dimension, not active under the headline rule."""
        return [not a for a in self.active]

    @property
    def n_collapsed(self) -> int:
        """The headline count's complement: dimensions with mean KL < 0.01 nats."""
        return self.latent_dim - self.n_active

    @property
    def order(self) -> list[int]:
        """Dimension indices sorted by KL, largest first (the order plots and traversals use)."""
        return [int(i) for i in np.argsort(-np.asarray(self.kl_per_dim), kind="stable")]


@dataclass
class CollapseReport:
    """What ``collapsekit.diagnose`` returns: per-level measurements, likelihoods, explanations.

    The convenience properties (``kl_per_dim``, ``active_units``, ...) read the first level
    (``z``, or ``z1`` of a hierarchy); use ``levels`` or :meth:`level` for the others.

    Attributes
    ----------
    levels : list of LevelReport
        Bottom (z or z1) to top.
    n_examples : int
        Examples in the evaluation pass.
    elbo, log_likelihood : float or None
        Means over examples, nats; ``None`` without a decoder (see ``notes``).
    elbo_per_example, log_likelihood_per_example : ndarray or None
        Per example, nats (not written to JSON; their summary statistics are).
    importance_samples : int or None
        S, the number of importance samples behind ``log_likelihood``.
    model : dict
        What was diagnosed: kind, architecture, hyper-parameters, source (run directory, ...).
    explanations : list of dict
        Causes and prescriptions (``{"level", "cause", "message", "prescription"}``).
    history : list of dict
        Per-epoch metrics of the training run (``metrics.jsonl``), when diagnosing a run.
    notes : list of str
        Anything the reader must know (a missing decoder, an estimate that saturates, ...).
    """

    levels: list[LevelReport]
    n_examples: int
    elbo: float | None = None
    log_likelihood: float | None = None
    importance_samples: int | None = None
    elbo_per_example: np.ndarray | None = field(default=None, repr=False)
    log_likelihood_per_example: np.ndarray | None = field(default=None, repr=False)
    model: dict[str, Any] = field(default_factory=dict)
    explanations: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)

    # -- the first level, for the common one-level case -------------------------------------------
    def level(self, name: str) -> LevelReport:
        """The level called ``name`` (``"z"``, ``"z1"``, ...)."""
        for level in self.levels:
            if level.name == name:
                return level
        raise KeyError(f"no latent level {name!r}; levels: {[lv.name for lv in self.levels]}")

    @property
    def kl_per_dim(self) -> list[float]:
        return self.levels[0].kl_per_dim

    @property
    def active_units(self) -> int:
        return self.levels[0].active_units

    @property
    def active_fraction(self) -> float:
        return self.levels[0].active_fraction

    @property
    def collapsed(self) -> list[bool]:
        return self.levels[0].collapsed

    @property
    def summary_level(self) -> LevelReport:
        """The level whose headline count summarises the model: the top of a hierarchy."""
        return self.levels[-1]

    @property
    def n_active(self) -> int:
        """The headline count of the summary level (the top of a hierarchy); active channels for a spatial
        latent."""
        return self.summary_level.headline[0]

    @property
    def mutual_info(self) -> float:
        return self.levels[0].mutual_info

    @property
    def mutual_info_minibatch(self) -> float:
        return self.levels[0].mutual_info_minibatch

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (per-example arrays summarised)."""
        out: dict[str, Any] = {"format": REPORT_FORMAT, "n_examples": self.n_examples, "units": "nats",
                               "definition": DEFINITION, "n_active": self.n_active,
                               "latent_size": self.summary_level.headline[1],
                               "model": self.model, "elbo": self.elbo, "log_likelihood": self.log_likelihood,
                               "importance_samples": self.importance_samples,
                               "levels": [_level_dict(level) for level in self.levels],
                               "explanations": self.explanations, "notes": self.notes, "history": self.history}
        for name in ("elbo_per_example", "log_likelihood_per_example"):
            values = getattr(self, name)
            if values is not None:
                out[name.replace("_per_example", "_summary")] = _summary(np.asarray(values))
        return _json_ready(out)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CollapseReport":
        """Rebuild a report from :meth:`to_dict` output (per-example arrays are not restored)."""
        levels = []
        for raw in values["levels"]:
            raw = dict(raw)
            theory = raw.pop("theory", None)
            if "active" not in raw:       # format 1: "collapsed" held the (ε, δ) flags
                raw["eps_delta_collapsed"] = raw.pop("collapsed", [])
                raw["active"] = active_mask(raw["kl_per_dim"]).tolist()
                raw["n_active"] = int(sum(raw["active"]))
            known = {f.name for f in fields(LevelReport)}
            level = LevelReport(**{k: v for k, v in raw.items() if k in known})
            level.theory = None if theory is None else TheoryComparison(**theory)
            levels.append(level)
        return cls(levels=levels, n_examples=int(values["n_examples"]), elbo=values.get("elbo"),
                   log_likelihood=values.get("log_likelihood"), importance_samples=values.get("importance_samples"),
                   model=values.get("model", {}), explanations=values.get("explanations", []),
                   history=values.get("history", []), notes=values.get("notes", []))

    def save_json(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as JSON, atomically."""
        path = Path(path)
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> "CollapseReport":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _level_dict(level: LevelReport) -> dict[str, Any]:
    """A level as JSON: every field, ``metrics`` only when a registered metric was computed."""
    values = asdict(level)
    if not values["metrics"]:
        del values["metrics"]
    if not values["latent_shape"]:                       # a vector latent: the spatial fields are empty
        for key in ("latent_shape", "kl_per_channel", "kl_per_position", "active_channels", "n_active_channels"):
            del values[key]
    return values


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "n": int(values.size)}


def _json_ready(value: Any) -> Any:
    """numpy scalars/arrays to Python; non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
