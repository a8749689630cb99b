"""A :class:`~collapsekit.diagnostics.report.CollapseReport` as Markdown and as one self-contained HTML file.

:func:`write_reports` is what ``collapsekit diagnose`` calls: it draws the figures that apply
(:mod:`collapsekit.viz.plots`), then writes ``report.json``, ``report.md`` (with PNGs in
``figures/``) and ``report.html`` (the same PNGs embedded as base64: no external resource, no
JavaScript), each atomically. :func:`render_markdown` (:mod:`.markdown`) and :func:`render_html`
(:mod:`.html`) only build strings; the words both use are :mod:`.report_text`. This module re-exports them.

Both documents lead with the verdict ("12 of 16 dimensions of z collapsed") and the explanations
(cause and prescription), then the summary numbers, the plots and one table per latent level with
the dimensions sorted by KL, the theory's prediction beside the measurement.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from collapsekit._io import atomic_path
from collapsekit.diagnostics.report import CollapseReport
from collapsekit.viz.html import render_html
from collapsekit.viz.markdown import render_markdown
from collapsekit.viz.png import figure_png
from collapsekit.viz.report_text import (CAUSE_TITLES, FIGURES, GLOSSARY, READING, dimension_rows, explanation_parts,
                                         headline, likelihood_text, mi_estimate_text, mi_line, model_title, verdict)

__all__ = ["CAUSE_TITLES", "FIGURES", "GLOSSARY", "READING", "build_figures", "dimension_rows", "explanation_parts",
           "figure_png", "headline", "likelihood_text", "mi_estimate_text", "mi_line", "model_title", "render_html",
           "render_markdown", "verdict", "write_reports"]


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
