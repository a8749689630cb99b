"""What the Markdown and HTML reports (and the CLI's report) say, in words: verdicts, the headline, the
theory line, mutual-information and likelihood sentences, explanation parts, the per-dimension rows, the
glossary and the figures' captions. Numbers are formatted by :mod:`collapsekit.formatting`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.diagnostics.metric_registry import METRICS, metric_title
from collapsekit.diagnostics.report import CollapseReport, LevelReport
from collapsekit.formatting import MISSING, number

#: Order and captions of the figures the report knows; other names are shown after them.
FIGURES: dict[str, str] = {
    "kl_per_dim": "KL per dimension, sorted, with the theory's prediction",
    "kl_heatmap": "KL per dimension over epochs",
    "activity": "Active units and mutual information over epochs",
    "reconstructions": "Reconstructions",
    "traversals": "Latent traversals, dimensions ordered by KL",
}
#: How to read each figure (the HTML caption).
READING: dict[str, str] = {
    "kl_per_dim": "Bars: measured KL of each dimension (nats, log axis), largest first; hatched grey bars are "
                  "(ε, δ)-collapsed. Diamonds: the theory's KL at the same rank (triangles on the axis: predicted "
                  "0, a predicted collapse). Dashed line: the threshold ε.",
    "kl_heatmap": "Each row is a dimension, ordered by its KL in the last epoch; colour is its epoch-mean KL "
                  "(nats, log scale). A row fading to dark is a dimension collapsing during training.",
    "activity": "Active units (count), the minibatch estimate of I(x; z) (nats; it cannot exceed log B) and the "
                "KL of each level (nats), per epoch.",
    "reconstructions": "Top: data. Bottom: the decoder's mean at the posterior mean. Blurry or identical "
                       "reconstructions go with collapsed latents.",
    "traversals": "Each row moves one dimension around an example's posterior mean (columns: offsets in units "
                  "of η_enc), the others fixed. A row that does not change is a dimension the decoder ignores.",
}


def value_text(value: Any) -> str:
    """A setting or number as the reports print it (lists bracketed; ``MISSING`` for None)."""
    if isinstance(value, float):
        return number(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return MISSING if value is None else str(value)


def verdict(level: LevelReport) -> str:
    """``"12 of 16 dimensions of z collapsed"``: the headline rule (:mod:`collapsekit.activity`); for a spatial
    latent, of its channels."""
    active, total, unit = level.headline
    return f"{total - active} of {total} {unit} of {level.name} collapsed"


def headline(report: CollapseReport) -> str:
    """The one sentence that answers "how many latent dimensions does this model use?"."""
    top = report.summary_level
    model = report.model or {}
    data = f"{model['data']}{', ' + model['part'] + ' part' if model.get('part') else ''}, " if model.get("data") else ""
    where = f"{data}{report.n_examples} examples"
    active, total, unit = top.headline
    spatial = (f", a channel's KL summed over its {'×'.join(map(str, top.latent_shape[1:]))} positions"
               if unit == "channels" else "")
    return (f"{active} of {total} {unit} of {top.name} active (mean KL ≥ {KL_ACTIVE_THRESHOLD:g} "
            f"nats per example{spatial}, measured on {where})")


#: One plain sentence per measure a report shows, so that no two of them are read as the same thing.
GLOSSARY: dict[str, str] = {
    "active / collapsed": f"the headline rule: a dimension is active when its KL to the prior, averaged over the "
                          f"examples, is at least {KL_ACTIVE_THRESHOLD:g} nats; otherwise it is collapsed and "
                          "carries (almost) no information about the input.",
    "Burda AU": "Burda et al.'s active units: dimensions whose posterior mean varies across examples "
                "(Var_x E[z_j] > 0.01); a dimension can keep KL while its mean is constant.",
    "AU fraction": "the paper's active fraction: the share of (example, dimension) pairs whose KL is at least "
                   f"{KL_ACTIVE_THRESHOLD:g} nats.",
    "(ε, δ)-collapsed": "Lucas et al.'s collapse: the KL is below ε for at least a share 1 − δ of the examples.",
    "active / passive / mixed (type)": "Bonheme & Grzes's variable types, from the posterior variance: active "
                                       "(variance far below the prior's everywhere), passive (posterior = prior "
                                       "everywhere), mixed (anything else).",
    "not collapsed, inactive": "the theory's case of a zero encoder mode with a fixed encoder std different from "
                               "the prior's: the mean carries nothing, but the KL is not zero.",
    "θ against the threshold": "θ is an eigenvalue of the data's second moments (the CVAE's residual E for a CVAE); "
                               "the closed form keeps a mode active when θ exceeds βη_dec², in the same units.",
    "I(x; z)": "mutual information between input and latent code, nats; the full-dataset estimate uses every "
               "example's posterior, the minibatch estimate cannot exceed log B.",
}


def glossary(report: CollapseReport) -> dict[str, str]:
    """:data:`GLOSSARY`, and the description of every registered metric the report holds."""
    held = dict.fromkeys(name for level in report.levels for name in level.metrics)
    extra = {METRICS[name].title: METRICS[name].description for name in held
             if name in METRICS and METRICS[name].description}
    return {**GLOSSARY, **extra}


def metric_lines(level: LevelReport) -> list[tuple[str, str]]:
    """(title, value) of each registered metric of a level (:mod:`collapsekit.diagnostics.metric_registry`)."""
    return [(metric_title(name), value_text(value)) for name, value in level.metrics.items()]


def theory_line(level: LevelReport) -> str | None:
    """The theory's prediction beside the measurement, in a sentence (None without a prediction)."""
    theory = level.theory
    if theory is None:
        return None
    agreement = "agrees" if theory.agrees else f"differs: {theory.difference()}"
    return (f"Theory ({theory.label}, {theory.theorem}): {theory.n_active_predicted} active dimensions predicted{theory.qualifier}, "
            f"{theory.n_active_measured} measured — {agreement}.")


def mi_estimate_text(value: float, interval: Sequence[float] | None, *, kind: str = "bootstrap CI") -> str:
    """A mutual-information estimate with its interval; a negative point estimate says the truth is ≥ 0."""
    ci = list(interval or [])
    text = f"{number(value)} nats" + (f" ({kind} {number(ci[0])} to {number(ci[1])})" if len(ci) == 2 else "")
    if value is not None and math.isfinite(value) and value < 0:
        text += "; below 0 by Monte Carlo error: the true value is ≥ 0"
    return text


def mi_line(level: LevelReport) -> str:
    """Both mutual-information estimates of a level, each named, with its interval and batch size."""
    minibatch = mi_estimate_text(level.mutual_info_minibatch, level.mutual_info_minibatch_ci,
                                 kind="Monte Carlo 95 % interval")
    return (f"I(x; {level.name}) = {mi_estimate_text(level.mutual_info, level.mutual_info_ci)}, full-dataset "
            f"estimate (the aggregate posterior of all examples); minibatch estimate "
            f"(He et al., B = {level.minibatch_size}, random batches) {minibatch}, at most log B = "
            f"{number(level.mutual_info_ceiling)} nats")


def likelihood_text(report: CollapseReport) -> tuple[str, str]:
    """(ELBO, log-likelihood) as sentences; the log-likelihood says S, or why it is missing."""
    elbo = "not computed" if report.elbo is None else f"{number(report.elbo)} nats per example"
    if report.log_likelihood is not None:
        samples = f"S = {report.importance_samples}" if report.importance_samples else "S unknown"
        return elbo, f"{number(report.log_likelihood)} nats per example (importance sampled, {samples})"
    why = next((n for n in report.notes if "likelihood" in n.lower() or "decoder" in n.lower()), None)
    if why is None:
        return elbo, "not computed"
    for prefix in ("log-likelihood", "log likelihood"):
        if why.lower().startswith(prefix):
            why = why[len(prefix):].lstrip(" :")
    return elbo, why if "not computed" in why.lower() else f"not computed: {why}"


def model_title(report: CollapseReport) -> str:
    model = report.model or {}
    if model.get("name"):                              # a model read through an adapter: its own name
        return str(model["name"])
    kind = str(model.get("kind", "model")).upper()
    kind = {"HVAE": "Hierarchical VAE"}.get(kind, kind)
    arch = f" ({model['arch']})" if model.get("arch") else ""
    data = f" on {model['data']}" if model.get("data") else ""
    return f"{kind}{arch}{data}"


def model_meta(report: CollapseReport) -> list[str]:
    """The model's settings and the examples evaluated, as short phrases."""
    model = report.model or {}
    parts = []
    if model.get("latent_shape") and len(model["latent_shape"]) > 1:
        parts.append(f"latent shape {'×'.join(map(str, model['latent_shape']))} (channels × positions)")
    names = {"latent_dims": "latent sizes", "beta": "β", "eta_enc": "η_enc", "eta_dec": "η_dec",
             "objective": "objective", "likelihood": "likelihood", "schedule": "β schedule", "epoch": "epoch"}
    for key, label in names.items():
        if model.get(key) is not None:
            parts.append(f"{label} {value_text(model[key])}")
    parts.append(f"{report.n_examples} examples evaluated")
    return parts


#: Headings of the explanation causes (``collapsekit.diagnostics.explain.CAUSES``).
CAUSE_TITLES: dict[str, str] = {
    "beta": "β too large for the data (collapse threshold βη_dec²)",
    "loss_reduction": "Reconstruction loss averaged instead of summed",
    "warmup": "KL warm-up not finished",
    "cvae_correlation": "x already predicts y: the CVAE's latent is not needed",
    "learnable_sigma2": "Learnable encoder variance at the top of the hierarchy",
    "rank": "More latent dimensions than usable data modes",
    "not_predicted": "A collapse the theory does not predict",
    "generic": "Dimensions that carry no information",
}


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    first = re.match(r"[A-Za-z]+", text)
    if first and (len(first.group()) > 1 or first.group() == "a") and text[len(first.group()):][:1] in ("", " ", ",", ":", ";"):
        text = text[0].upper() + text[1:]      # "the …" → "The …"; never x → X, β → Β, z1 → Z1
    return text if text[-1] in ".!?)" else text + "."


def explanation_parts(item: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(level, cause, message, prescription) of one explanation dict, tolerant of missing keys."""
    level = str(item.get("level", "") or "")
    raw = str(item.get("cause", "") or "").strip()
    cause = CAUSE_TITLES.get(raw) or _sentence(raw.replace("_", " ")).rstrip(".")
    message = _sentence(str(item.get("message", "") or ""))
    prescription = item.get("prescription", "")
    if isinstance(prescription, Mapping):
        prescription = "; ".join(f"{k} = {value_text(v)}" for k, v in prescription.items())
    elif isinstance(prescription, (list, tuple)):
        prescription = "; ".join(str(p) for p in prescription)
    return level, cause, message, _sentence(str(prescription or ""))


def dimension_rows(level: LevelReport) -> list[dict[str, Any]]:
    """One row per dimension, sorted by KL, with the theory's value of the same rank."""
    predicted = level.theory.kl_per_dim if level.theory is not None else []

    def at(values: Sequence[Any], j: int, default: Any = None) -> Any:
        return values[j] if j < len(values) else default

    rows = []
    for rank, j in enumerate(level.order):
        variance = at(level.variance_of_mean, j)
        rows.append({"rank": rank + 1, "dim": j, "kl": at(level.kl_per_dim, j),
                     "predicted": predicted[rank] if rank < len(predicted) else None,
                     "variance_of_mean": variance,
                     "active": bool(at(level.active, j, False)), "collapsed": not at(level.active, j, False),
                     "burda_active": variance is not None and float(variance) > level.active_units_threshold,
                     "eps_delta_collapsed": bool(at(level.eps_delta_collapsed, j, False)),
                     "type": at(level.variable_types, j, MISSING), "mi": at(level.mutual_info_per_dim, j)})
    return rows



def figure_caption(name: str) -> str:
    """A figure's caption (``kl_heatmap_z2`` → "KL per dimension over epochs: z2")."""
    if name in FIGURES:
        return FIGURES[name]
    for key, caption in FIGURES.items():
        if name.startswith(key + "_"):
            return f"{caption}: {name[len(key) + 1:]}"
    return name.replace("_", " ")


def ordered_figures(items: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Figures in the order of :data:`FIGURES` (other names after them)."""
    keys = list(FIGURES)

    def rank(name: str) -> tuple[int, str]:
        for i, key in enumerate(keys):
            if name == key or name.startswith(key + "_"):
                return i, name
        return len(keys), name

    return sorted(items.items(), key=lambda item: rank(item[0]))

