"""A :class:`~collapsekit.diagnostics.report.CollapseReport` as GitHub-flavoured Markdown."""

from __future__ import annotations

from collections.abc import Mapping

from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.diagnostics.report import CollapseReport
from collapsekit.formatting import number
from collapsekit.viz.report_text import (dimension_rows, explanation_parts, figure_caption, glossary, headline,
                                         likelihood_text, metric_lines, mi_line, model_meta, model_title,
                                         ordered_figures, theory_line, verdict)


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
    out += [" · ".join(model_meta(report)), "", "## Verdict", "", f"**{headline(report)}.**", ""]
    for level in report.levels:
        out.append(f"- **{verdict(level)}** (mean KL < {KL_ACTIVE_THRESHOLD:g} nats)")
        line = theory_line(level)
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
        out += [f"| {_md_escape(title)} of {level.name} | {_md_escape(value)} |"
                for title, value in metric_lines(level)]
    out.append("")
    if images:
        out += ["## Plots", ""]
        for name, path in ordered_figures(images):
            caption = figure_caption(name)
            out += [f"### {caption}", "", f"![{caption}]({path})", ""]
    spatial = [level for level in report.levels if level.latent_shape]
    if spatial:
        out += ["## Per-channel measurements", ""]
        for level in spatial:
            out += [f"### {level.name}: KL per channel (the sum over its positions)", "",
                    "| channel | KL (nats) | state |", "| ---: | ---: | ---: |"]
            out += [f"| {c} | {number(kl)} | {'active' if active else '**collapsed**'} |"
                    for c, (kl, active) in enumerate(zip(level.kl_per_channel, level.active_channels))]
            out.append("")
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
        line = theory_line(level)
        if line:
            out += [line, ""]
        out += [mi_line(level) + ".", ""]
    out += ["## What each measure means", ""]
    out += [f"- **{term}**: {text}" for term, text in glossary(report).items()] + [""]
    if report.notes:
        out += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(out).rstrip() + "\n"

