"""A :class:`~collapsekit.diagnostics.report.CollapseReport` as one self-contained HTML document (inline CSS,
figures embedded as base64 PNG, no script, no external resource)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.diagnostics.report import CollapseReport, LevelReport
from collapsekit.formatting import MISSING, number
from collapsekit.viz.png import FIGURE_DPI, figure_png, png_size
from collapsekit.viz.report_text import (READING, dimension_rows, explanation_parts, figure_caption, glossary,
                                         headline, likelihood_text, metric_lines, mi_estimate_text, mi_line,
                                         model_meta, model_title, ordered_figures, theory_line, value_text, verdict)

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


def _alt(name: str, report: CollapseReport) -> str:
    """A text alternative that says what the figure shows, with the numbers that matter."""
    levels = "; ".join(verdict(level) for level in report.levels)
    if name == "kl_per_dim":
        theory = [f"{lv.name}: theory ({lv.theory.label}) predicts {lv.theory.n_active_predicted} active{lv.theory.qualifier}, "
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
    return figure_caption(name)


def _figure_html(name: str, figure: Figure | bytes, report: CollapseReport) -> str:
    data = figure if isinstance(figure, (bytes, bytearray)) else figure_png(figure)
    width, height = png_size(bytes(data))
    size = (f' width="{round(width * 100 / FIGURE_DPI)}" height="{round(height * 100 / FIGURE_DPI)}"'
            if width and height else "")
    encoded = base64.b64encode(bytes(data)).decode("ascii")
    key = next((k for k in READING if name == k or name.startswith(k + "_")), None)
    caption = READING[key] if key else figure_caption(name)
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
        f"<h1>{_e(model_title(report))}</h1>", f'<p class="meta">{_e(" · ".join(model_meta(report)))}</p></header>',
    ]
    # Verdict and explanations first: what a reader came for.
    parts.append('<section aria-labelledby="verdict"><h2 id="verdict">Verdict</h2>')
    parts.append(f'<div class="banner {"bad" if any_collapsed else "good"}" role="status">')
    if report.levels:
        parts.append(f'<p class="headline">{_e(headline(report))}</p>')
    for level in report.levels:
        parts.append(f'<p class="headline">{_e(verdict(level))}</p>')
        line = theory_line(level)
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
        for title, value in metric_lines(level):
            card(f"{title} of {level.name}", value, "registered metric")
    parts.append("</div></section>")

    if figures:
        parts.append('<section aria-labelledby="plots"><h2 id="plots">Plots</h2>')
        for name, figure in ordered_figures(figures):
            parts.append(f"<h3>{_e(figure_caption(name))}</h3>")
            parts.append(_figure_html(name, figure, report))
        parts.append("</section>")

    parts.append('<section aria-labelledby="levels"><h2 id="levels">Per-dimension measurements</h2>')
    for level in (level for level in report.levels if level.latent_shape):      # a spatial latent: per channel
        parts.append(f"<h3>{_e(level.name)}: KL per channel (the sum over its positions)</h3>")
        rows = "".join(f"<tr><td>{c}</td><td>{_e(number(kl))}</td><td>{'active' if active else '<b>collapsed</b>'}"
                       "</td></tr>" for c, (kl, active) in enumerate(zip(level.kl_per_channel, level.active_channels)))
        parts.append(f"<table><thead><tr><th>channel</th><th>KL (nats)</th><th>state</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    for level in report.levels:
        parts.append(f"<h3>{_e(level.name)}: {_e(verdict(level))}</h3>")
        line = theory_line(level)
        if line:
            theory = level.theory
            css = "agree" if theory is not None and theory.agrees else "differ"
            parts.append(f'<p class="theory {css}">{_e(line)}</p>')
        parts.append(f'<p class="mi">{_e(mi_line(level))}.</p>')
        parts.append(_table_html(level))
    parts.append("</section>")

    parts.append('<section aria-labelledby="glossary"><h2 id="glossary">What each measure means</h2><dl class="model">')
    for term, text in glossary(report).items():
        parts.append(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>")
    parts.append("</dl></section>")
    if report.notes:
        parts.append('<section aria-labelledby="notes"><h2 id="notes">Notes</h2><ul class="notes">')
        parts += [f"<li>{_e(note)}</li>" for note in report.notes]
        parts.append("</ul></section>")
    if report.model:
        parts.append('<section aria-labelledby="model"><h2 id="model">Model and run</h2><dl class="model">')
        for key, value in report.model.items():
            parts.append(f"<dt>{_e(key)}</dt><dd>{_e(value_text(value))}</dd>")
        parts.append("</dl></section>")
    parts.append("<footer>Written by collapsekit. All KL, rate, ELBO, likelihood and mutual-information values "
                 "are in nats per example. The JSON beside this file holds every number.</footer>")
    parts += ["</main>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"

