"""Plots and reports (matplotlib, written to files; no display needed).

``plot_spectrum`` draws a theory prediction; the diagnostics plots (:mod:`.plots`) and the report
writers (:mod:`.report`: ``report.json``, ``report.md``, a self-contained ``report.html``) are
imported on first use, since they pull in torch through the diagnostics.
"""

from typing import Any

from collapsekit.viz.spectrum import plot_spectrum

_LAZY = {name: "collapsekit.viz.plots" for name in (
    "plot_kl_per_dim", "plot_kl_heatmap", "plot_activity_over_epochs", "plot_reconstructions", "plot_traversals")}
_LAZY |= {name: "collapsekit.viz.report" for name in ("render_html", "render_markdown", "write_reports")}

__all__ = ["plot_spectrum", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'collapsekit.viz' has no attribute {name!r}")
