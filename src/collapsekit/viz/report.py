"""A :class:`~collapsekit.diagnostics.report.CollapseReport` as Markdown and as one self-contained HTML file.

:func:`write_reports` is what ``collapsekit diagnose`` calls: it draws the figures that apply
(:mod:`collapsekit.viz.plots`), then writes ``report.json``, ``report.md`` (with PNGs in
``figures/``) and ``report.html`` (the same PNGs embedded as base64: no external resource, no
JavaScript), each atomically. :func:`render_markdown` and :func:`render_html` only build strings.

Both documents lead with the verdict ("12 of 16 dimensions of z collapsed") and the explanations
(cause and prescription), then the summary numbers, the plots and one table per latent level with
the dimensions sorted by KL, the theory's prediction beside the measurement.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from collapsekit._io import atomic_path
from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.diagnostics.report import CollapseReport, LevelReport
from collapsekit.formatting import MISSING, number

__all__ = ["build_figures", "dimension_rows", "explanation_parts", "figure_png", "likelihood_text", "model_title",
           "render_html", "render_markdown", "verdict", "write_reports"]

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
_DPI = 160


# -- numbers and words ----------------------------------------------------------------------------
def _value(value: Any) -> str:
    if isinstance(value, float):
        return number(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return MISSING if value is None else str(value)


def verdict(level: LevelReport) -> str:
    """``"12 of 16 dimensions of z collapsed"``: the headline rule (:mod:`collapsekit.activity`)."""
    return f"{level.n_collapsed} of {level.latent_dim} dimensions of {level.name} collapsed"


def headline(report: CollapseReport) -> str:
    """The one sentence that answers "how many latent dimensions does this model use?"."""
    top = report.summary_level
    model = report.model or {}
    data = f"{model['data']}{', ' + model['part'] + ' part' if model.get('part') else ''}, " if model.get("data") else ""
    where = f"{data}{report.n_examples} examples"
    return (f"{top.n_active} of {top.latent_dim} dimensions of {top.name} active (mean KL ≥ {KL_ACTIVE_THRESHOLD:g} "
            f"nats per example, measured on {where})")


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


def _theory_line(level: LevelReport) -> str | None:
    theory = level.theory
    if theory is None:
        return None
    agreement = "agrees" if theory.agrees else f"differs: {theory.difference()}"
    return (f"Theory ({theory.label}, {theory.theorem}): {theory.n_active_predicted} active dimensions predicted, "
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
    kind = str(model.get("kind", "model")).upper()
    kind = {"HVAE": "Hierarchical VAE"}.get(kind, kind)
    arch = f" ({model['arch']})" if model.get("arch") else ""
    data = f" on {model['data']}" if model.get("data") else ""
    return f"{kind}{arch}{data}"


def _model_meta(report: CollapseReport) -> list[str]:
    model = report.model or {}
    parts = []
    names = {"latent_dims": "latent sizes", "beta": "β", "eta_enc": "η_enc", "eta_dec": "η_dec",
             "objective": "objective", "likelihood": "likelihood", "schedule": "β schedule", "epoch": "epoch"}
    for key, label in names.items():
        if model.get(key) is not None:
            parts.append(f"{label} {_value(model[key])}")
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
        prescription = "; ".join(f"{k} = {_value(v)}" for k, v in prescription.items())
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


# -- Markdown ---------------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: CollapseReport, images: Mapping[str, str] | None = None) -> str:
    """The report as GitHub-flavoured Markdown.

    Parameters
    ----------
    report : CollapseReport
    images : mapping of str to str, optional
        Figure name (``"kl_per_dim"``, ...) → path relative to the Markdown file, linked as images.
    """
    out: list[str] = [f"# Posterior-collapse report: {model_title(report)}", ""]
    out += [" · ".join(_model_meta(report)), "", "## Verdict", "", f"**{headline(report)}.**", ""]
    for level in report.levels:
        out.append(f"- **{verdict(level)}** (mean KL < {KL_ACTIVE_THRESHOLD:g} nats)")
        line = _theory_line(level)
        if line:
            out.append(f"  - {line}")
    out.append("")
    out += ["## Explanations", ""]
    if report.explanations:
        for item in report.explanations:
            lvl, cause, message, prescription = explanation_parts(item)
            where = f" ({lvl})" if lvl else ""
            out.append(f"- **{cause or 'cause'}**{where}: {message}")
            if prescription:
                out.append(f"  - **Prescription:** {prescription}")
    else:
        out.append("No collapse to explain." if not any(lv.n_collapsed for lv in report.levels)
                   else "No explanation was produced for the collapsed dimensions.")
    out.append("")
    elbo, loglik = likelihood_text(report)
    out += ["## Summary", "", "| quantity | value |", "| --- | --- |",
            f"| model | {_md_escape(model_title(report))} |", f"| examples | {report.n_examples} |",
            f"| ELBO | {elbo} |", f"| log-likelihood | {_md_escape(loglik)} |"]
    for level in report.levels:
        out.append(f"| active dimensions of {level.name} (mean KL ≥ {KL_ACTIVE_THRESHOLD:g} nats) | "
                   f"{level.n_active} of {level.latent_dim} |")
        out.append(f"| Burda AU of {level.name} (Var E[z] > {level.active_units_threshold:g}) | "
                   f"{level.active_units} of {level.latent_dim} |")
        out.append(f"| (ε, δ)-collapsed dimensions of {level.name} (ε = {level.epsilon:g}, δ = {level.delta:g}) | "
                   f"{sum(level.eps_delta_collapsed)} of {level.latent_dim} |")
        out.append(f"| rate of {level.name} | {number(level.rate)} nats |")
        out.append(f"| I(x; {level.name}) | {_md_escape(mi_line(level).split(' = ', 1)[1])} |")
    out.append("")
    if images:
        out += ["## Plots", ""]
        for name, path in _ordered(images):
            caption = _caption(name)
            out += [f"### {caption}", "", f"![{caption}]({path})", ""]
    out += ["## Per-dimension measurements", ""]
    for level in report.levels:
        out += [f"### {level.name}: {verdict(level)}", ""]
        theory = level.theory
        header = ["rank", "dim", "KL (nats)"]
        if theory is not None:
            header.append(f"predicted KL (nats, {theory.label})")
        header += ["state", "Var E[z]", "Burda AU?", "(ε, δ)-collapsed?", "type", "I(x; z_j) (nats)"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(" ---: " if h not in ("type",) else " --- " for h in header) + "|")
        for row in dimension_rows(level):
            cells = [str(row["rank"]), str(row["dim"]), number(row["kl"])]
            if theory is not None:
                cells.append(number(row["predicted"]))
            cells += ["active" if row["active"] else "**collapsed**", number(row["variance_of_mean"]),
                      "yes" if row["burda_active"] else "no", "yes" if row["eps_delta_collapsed"] else "no",
                      str(row["type"]), number(row["mi"])]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        line = _theory_line(level)
        if line:
            out += [line, ""]
        out += [mi_line(level) + ".", ""]
    out += ["## What each measure means", ""] + [f"- **{term}**: {text}" for term, text in GLOSSARY.items()] + [""]
    if report.notes:
        out += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(out).rstrip() + "\n"


# -- HTML ------------------------------------------------------------------------------------------
_CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d8dee4; --bg:#f6f8fa; --blue:#0072B2; --verm:#D55E00;
        --green:#009E73; --orange:#E69F00; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", "Liberation Sans",
             Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; }
header.top { border-bottom: 1px solid var(--line); padding-bottom: 14px; margin-bottom: 18px; }
.kicker { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: var(--muted); margin: 0; }
h1 { font-size: 26px; margin: 4px 0 6px; }
h2 { font-size: 19px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
.meta { color: var(--muted); margin: 0; font-size: 14px; }
.banner { border-radius: 8px; padding: 14px 18px; margin: 8px 0 12px; border-left: 6px solid; }
.banner.bad { background: #fdf0e9; border-color: var(--verm); }
.banner.good { background: #e7f5f0; border-color: var(--green); }
.banner .headline { font-size: 21px; font-weight: 700; margin: 0 0 2px; }
.banner p { margin: 4px 0; }
.banner .sub { color: var(--muted); font-size: 13.5px; }
ol.explain { padding-left: 0; list-style: none; margin: 8px 0; }
ol.explain li { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 8px 0;
                background: #fffdf7; }
.cause { font-weight: 700; }
.level-tag { display: inline-block; font-size: 12px; color: var(--muted); border: 1px solid var(--line);
             border-radius: 10px; padding: 0 7px; margin-left: 6px; }
.fix { margin: 6px 0 0; padding: 6px 10px; background: #e9f3fb; border-radius: 6px; }
.fix strong { color: var(--blue); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(168px, 1fr)); gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: var(--bg); }
.card .label { font-size: 12.5px; color: var(--muted); }
.card .value { font-size: 20px; font-weight: 650; }
.card .detail { font-size: 12.5px; color: var(--muted); }
figure { margin: 14px 0 22px; padding: 12px; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 8px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; margin: 8px 0; min-width: 60%; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--bg); font-weight: 600; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tr.collapsed td { color: #6e7781; background: #f6f6f6; }
.pill { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; }
.pill.yes { background: #fde3d6; color: #8a3200; }
.pill.no { background: #dff3ec; color: #00573f; }
.pill.act { background: #dcecf8; color: #004a75; }
.theory { margin: 6px 0; }
.theory.agree::before { content: "✓ "; color: var(--green); font-weight: 700; }
.theory.differ::before { content: "≠ "; color: var(--verm); font-weight: 700; }
.mi { color: var(--muted); font-size: 13.5px; margin: 4px 0; }
ul.notes li { margin: 3px 0; }
dl.model { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 13.5px; }
dl.model dt { color: var(--muted); }
dl.model dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
footer { margin-top: 36px; color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--line);
         padding-top: 10px; }
caption.sr { caption-side: top; text-align: left; color: var(--muted); font-size: 12.5px; padding: 2px 0 6px; }
@media print { figure, table { break-inside: avoid; } }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return 0, 0
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def figure_png(figure: Figure, dpi: int = _DPI) -> bytes:
    """A figure as PNG bytes (no metadata, white background)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _caption(name: str) -> str:
    if name in FIGURES:
        return FIGURES[name]
    for key, caption in FIGURES.items():
        if name.startswith(key + "_"):
            return f"{caption}: {name[len(key) + 1:]}"
    return name.replace("_", " ")


def _ordered(items: Mapping[str, Any]) -> list[tuple[str, Any]]:
    keys = list(FIGURES)

    def rank(name: str) -> tuple[int, str]:
        for i, key in enumerate(keys):
            if name == key or name.startswith(key + "_"):
                return i, name
        return len(keys), name

    return sorted(items.items(), key=lambda item: rank(item[0]))


def _alt(name: str, report: CollapseReport) -> str:
    """A text alternative that says what the figure shows, with the numbers that matter."""
    levels = "; ".join(verdict(level) for level in report.levels)
    if name == "kl_per_dim":
        theory = [f"{lv.name}: theory ({lv.theory.label}) predicts {lv.theory.n_active_predicted} active, "
                  f"{lv.theory.n_active_measured} measured" for lv in report.levels if lv.theory is not None]
        return ("Bar chart of the measured KL per latent dimension in nats, sorted from largest to smallest, on a "
                f"log axis with the collapse threshold ε as a dashed line. {levels}."
                + (" " + "; ".join(theory) + "." if theory else ""))
    if name.startswith("kl_heatmap"):
        return ("Heatmap of the KL per latent dimension (rows, ordered by final KL) over training epochs "
                "(columns), log colour scale in nats.")
    if name == "activity":
        return ("Line charts over training epochs: active units, minibatch mutual information in nats with its "
                "log B ceiling, and KL per latent level in nats.")
    if name == "reconstructions":
        return "Example data images (top row) and their reconstructions from the posterior mean (bottom row)."
    if name == "traversals":
        order = report.levels[0].order[:8] if report.levels else []
        return ("Grid of decoded images: each row varies one latent dimension around an example's posterior "
                f"mean, rows ordered by KL (dimensions {', '.join(map(str, order))}); collapsed dimensions give "
                "constant rows.")
    return _caption(name)


def _figure_html(name: str, figure: Figure | bytes, report: CollapseReport) -> str:
    data = figure if isinstance(figure, (bytes, bytearray)) else figure_png(figure)
    width, height = _png_size(bytes(data))
    size = (f' width="{round(width * 100 / _DPI)}" height="{round(height * 100 / _DPI)}"'
            if width and height else "")
    encoded = base64.b64encode(bytes(data)).decode("ascii")
    key = next((k for k in READING if name == k or name.startswith(k + "_")), None)
    caption = READING[key] if key else _caption(name)
    return (f'<figure id="fig-{_e(name)}"><img src="data:image/png;base64,{encoded}" alt="{_e(_alt(name, report))}"'
            f'{size}><figcaption>{_e(caption)}</figcaption></figure>')


def _table_html(level: LevelReport) -> str:
    theory = level.theory
    head = ['<th scope="col">rank</th>', '<th scope="col">dim</th>', '<th scope="col">KL (nats)</th>']
    if theory is not None:
        head.append(f'<th scope="col">predicted KL (nats, {_e(theory.label)})</th>')
    head += [f'<th scope="col" title="mean KL ≥ {KL_ACTIVE_THRESHOLD:g} nats">state</th>',
             '<th scope="col">Var E[z<sub>j</sub>]</th>',
             f'<th scope="col" title="Var E[z_j] &gt; {level.active_units_threshold:g}">Burda AU?</th>',
             f'<th scope="col" title="(ε, δ) = ({level.epsilon:g}, {level.delta:g})">(ε, δ)-collapsed?</th>',
             '<th scope="col" class="text">type</th>', '<th scope="col">I(x; z<sub>j</sub>) (nats)</th>']
    body = []
    for row in dimension_rows(level):
        cells = [f"<td>{row['rank']}</td>", f"<td>{row['dim']}</td>", f"<td>{number(row['kl'])}</td>"]
        if theory is not None:
            cells.append(f"<td>{number(row['predicted'])}</td>")
        state = '<span class="pill yes">collapsed</span>' if row["collapsed"] else '<span class="pill act">active</span>'
        burda = "yes" if row["burda_active"] else "no"
        eps_delta = "yes" if row["eps_delta_collapsed"] else "no"
        cells += [f"<td>{state}</td>", f"<td>{number(row['variance_of_mean'])}</td>", f"<td>{burda}</td>",
                  f"<td>{eps_delta}</td>",
                  f'<td class="text">{_e(row["type"])}</td>', f"<td>{number(row['mi'])}</td>"]
        css = ' class="collapsed"' if row["collapsed"] else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    caption = (f"{_e(level.name)}: dimensions sorted by KL, largest first"
               + ("; the prediction is compared rank by rank (dimensions are identified only up to permutation)"
                  if theory is not None else ""))
    return (f'<div class="table-wrap"><table><caption class="sr">{caption}</caption><thead><tr>{"".join(head)}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def render_html(report: CollapseReport, figures: Mapping[str, Figure | bytes] | None = None, *,
                title: str | None = None) -> str:
    """The report as one self-contained HTML document.

    Inline CSS, figures embedded as base64 PNG (a :class:`~matplotlib.figure.Figure` is rendered
    here; PNG bytes are embedded as they are), no script, no external resource. The verdict banner
    and the explanations come first, then the summary, the plots, one table per level and the notes.
    """
    figures = figures or {}
    any_collapsed = any(level.n_collapsed for level in report.levels)
    heading = title or f"Posterior-collapse report: {model_title(report)}"
    parts: list[str] = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(heading)}</title>",
        f"<style>{_CSS}</style>",
        "</head>", "<body>", "<main>",
        '<header class="top"><p class="kicker">collapsekit · posterior-collapse report</p>',
        f"<h1>{_e(model_title(report))}</h1>", f'<p class="meta">{_e(" · ".join(_model_meta(report)))}</p></header>',
    ]
    # Verdict and explanations first: what a reader came for.
    parts.append('<section aria-labelledby="verdict"><h2 id="verdict">Verdict</h2>')
    parts.append(f'<div class="banner {"bad" if any_collapsed else "good"}" role="status">')
    if report.levels:
        parts.append(f'<p class="headline">{_e(headline(report))}</p>')
    for level in report.levels:
        parts.append(f'<p class="headline">{_e(verdict(level))}</p>')
        line = _theory_line(level)
        if line:
            parts.append(f"<p>{_e(line)}</p>")
    parts.append(f'<p class="sub">A dimension is collapsed when its KL to the prior, averaged over the examples, '
                 f"is below {KL_ACTIVE_THRESHOLD:g} nats: it then carries almost no information about the input. "
                 "Every other measure below keeps its own name; the last section says what each means.</p>")
    parts.append("</div></section>")
    parts.append('<section aria-labelledby="explanations"><h2 id="explanations">Explanations</h2>')
    if report.explanations:
        parts.append('<ol class="explain">')
        for item in report.explanations:
            lvl, cause, message, prescription = explanation_parts(item)
            tag = f'<span class="level-tag">{_e(lvl)}</span>' if lvl else ""
            fix = f'<p class="fix"><strong>Prescription:</strong> {_e(prescription)}</p>' if prescription else ""
            parts.append(f'<li><span class="cause">{_e(cause or "cause")}</span>{tag}<p>{_e(message)}</p>{fix}</li>')
        parts.append("</ol>")
    else:
        parts.append("<p>" + ("No collapse to explain." if not any_collapsed
                              else "No explanation was produced for the collapsed dimensions.") + "</p>")
    parts.append("</section>")

    elbo, loglik = likelihood_text(report)
    parts.append('<section aria-labelledby="summary"><h2 id="summary">Summary</h2><div class="cards">')

    def card(label: str, value: str, detail: str = "") -> None:
        extra = f'<div class="detail">{_e(detail)}</div>' if detail else ""
        parts.append(f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
                     f"{extra}</div>")

    card("examples evaluated", str(report.n_examples))
    card("ELBO (nats per example)", number(report.elbo),
         "" if report.elbo is not None else elbo)
    if report.log_likelihood is not None:
        card("log-likelihood (nats per example)", number(report.log_likelihood),
             f"importance sampled, S = {report.importance_samples}")
    else:
        card("log-likelihood", MISSING, loglik)
    for level in report.levels:
        card(f"active dimensions of {level.name}", f"{level.n_active} of {level.latent_dim}",
             f"mean KL ≥ {KL_ACTIVE_THRESHOLD:g} nats; {sum(level.eps_delta_collapsed)} (ε, δ)-collapsed")
        card(f"Burda AU of {level.name}", f"{level.active_units} of {level.latent_dim}",
             f"Var E[z_j] > {level.active_units_threshold:g}; AU fraction {number(level.active_fraction, 3)}")
        ci = level.mutual_info_ci or []
        card(f"I(x; {level.name}) (nats)", number(level.mutual_info),
             f"full-dataset estimate {mi_estimate_text(level.mutual_info, ci)}; minibatch (B = "
             f"{level.minibatch_size}) {mi_estimate_text(level.mutual_info_minibatch, level.mutual_info_minibatch_ci, kind='MC 95 % interval')}"
             f" ≤ log B = {number(level.mutual_info_ceiling)}")
        card(f"rate of {level.name} (nats)", number(level.rate), "Σ_j KL per dimension"
             + ("" if level.kl_exact else "; Monte Carlo estimate"))
    parts.append("</div></section>")

    if figures:
        parts.append('<section aria-labelledby="plots"><h2 id="plots">Plots</h2>')
        for name, figure in _ordered(figures):
            parts.append(f"<h3>{_e(_caption(name))}</h3>")
            parts.append(_figure_html(name, figure, report))
        parts.append("</section>")

    parts.append('<section aria-labelledby="levels"><h2 id="levels">Per-dimension measurements</h2>')
    for level in report.levels:
        parts.append(f"<h3>{_e(level.name)}: {_e(verdict(level))}</h3>")
        line = _theory_line(level)
        if line:
            theory = level.theory
            css = "agree" if theory is not None and theory.agrees else "differ"
            parts.append(f'<p class="theory {css}">{_e(line)}</p>')
        parts.append(f'<p class="mi">{_e(mi_line(level))}.</p>')
        parts.append(_table_html(level))
    parts.append("</section>")

    parts.append('<section aria-labelledby="glossary"><h2 id="glossary">What each measure means</h2><dl class="model">')
    for term, text in GLOSSARY.items():
        parts.append(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>")
    parts.append("</dl></section>")
    if report.notes:
        parts.append('<section aria-labelledby="notes"><h2 id="notes">Notes</h2><ul class="notes">')
        parts += [f"<li>{_e(note)}</li>" for note in report.notes]
        parts.append("</ul></section>")
    if report.model:
        parts.append('<section aria-labelledby="model"><h2 id="model">Model and run</h2><dl class="model">')
        for key, value in report.model.items():
            parts.append(f"<dt>{_e(key)}</dt><dd>{_e(_value(value))}</dd>")
        parts.append("</dl></section>")
    parts.append("<footer>Written by collapsekit. All KL, rate, ELBO, likelihood and mutual-information values "
                 "are in nats per example. The JSON beside this file holds every number.</footer>")
    parts += ["</main>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


# -- everything at once ----------------------------------------------------------------------------
def _close(figure: Figure) -> None:
    """Free a figure: ours are built without pyplot, but a caller's may be registered with it."""
    import sys

    figure.clear()
    pyplot = sys.modules.get("matplotlib.pyplot")      # never import pyplot (and a GUI backend) just for this
    if pyplot is not None:
        pyplot.close(figure)


def build_figures(report: CollapseReport, *, model: Any = None, x: Any = None, y: Any = None,
                  image_shape: Sequence[int] | None = None, merge: Callable[..., Any] | None = None,
                  notes: list[str] | None = None) -> dict[str, Figure]:
    """The figures that apply to ``report`` (and to ``model`` on examples ``x``[, ``y``]).

    Names: ``kl_per_dim``; ``kl_heatmap`` (``kl_heatmap_z1``, ... in a hierarchy) and ``activity``
    when the report has a training history; ``reconstructions`` and ``traversals`` when a model and
    image-shaped data are given. A model-based figure that fails is left out and the reason
    appended to ``notes`` (the report itself must still be written).
    """
    from collapsekit.viz import plots

    figures: dict[str, Figure] = {}
    if report.levels:
        figures["kl_per_dim"] = plots.plot_kl_per_dim(report)
    if report.history:
        for index, level in enumerate(report.levels):
            name = "kl_heatmap" if len(report.levels) == 1 else f"kl_heatmap_{level.name}"
            heatmap = plots.plot_kl_heatmap(report.history, index, name=level.name)
            if heatmap is not None:
                figures[name] = heatmap
        # The training minibatch size bounds the recorded MI (log B); the records or the model say it.
        batch = (report.model or {}).get("batch_size")
        activity = plots.plot_activity_over_epochs(report.history,
                                                   latent_dims=[lv.latent_dim for lv in report.levels],
                                                   mi_ceiling=math.log(float(batch)) if batch else None)
        if activity is not None:
            figures["activity"] = activity
    if model is not None and x is not None and image_shape is not None and report.levels:
        first = report.levels[0]
        for name, draw in (
            ("reconstructions", lambda: plots.plot_reconstructions(model, x, y, image_shape=image_shape,
                                                                   merge=merge)),
            ("traversals", lambda: plots.plot_traversals(model, x, y, order=first.order, image_shape=image_shape,
                                                         kl=first.kl_per_dim, collapsed=first.collapsed,
                                                         merge=merge)),
        ):
            try:
                figure = draw()
            except Exception as exc:   # noqa: BLE001 - a custom model may not follow the contract
                if notes is not None:
                    notes.append(f"{name} not drawn: {type(exc).__name__}: {exc}")
                continue
            if figure is not None:
                figures[name] = figure
    return figures


def write_reports(report: CollapseReport, out_dir: str | Path, *, model: Any = None, x: Any = None, y: Any = None,
                  image_shape: Sequence[int] | None = None, merge: Callable[..., Any] | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` (+ ``figures/*.png``) and ``report.html`` into ``out_dir``.

    Parameters
    ----------
    report : CollapseReport
    out_dir : str or Path
        Created if missing. Each file is written atomically (temporary file, then rename).
    model, x, y, image_shape, merge
        For reconstructions and traversals: the trained model, examples (the first few are drawn;
        ``y`` for a CVAE), the image (H, W) of a whole image, and for a CVAE the function that
        puts x and y back together (e.g. :func:`~collapsekit.data.quadrant_merge`).

    Returns
    -------
    dict of str to Path
        ``"json"``, ``"markdown"``, ``"html"``, and one entry per figure name → its PNG.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra_notes: list[str] = []
    figures = build_figures(report, model=model, x=x, y=y, image_shape=image_shape, merge=merge, notes=extra_notes)
    shown = dataclasses.replace(report, notes=[*report.notes, *extra_notes]) if extra_notes else report
    paths: dict[str, Path] = {}
    pngs: dict[str, bytes] = {}
    try:
        for name, figure in figures.items():
            pngs[name] = figure_png(figure)
    finally:
        for figure in figures.values():
            _close(figure)
    for name, data in pngs.items():
        path = out / "figures" / f"{name}.png"
        with atomic_path(path) as temporary:
            temporary.write_bytes(data)
        paths[name] = path
    paths["json"] = report.save_json(out / "report.json")
    markdown = render_markdown(shown, {name: f"figures/{name}.png" for name in pngs})
    paths["markdown"] = _write_text(out / "report.md", markdown)
    paths["html"] = _write_text(out / "report.html", render_html(shown, pngs))
    return paths


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
