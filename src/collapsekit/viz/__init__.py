"""Plots (matplotlib, written to files; no display needed)."""

from collapsekit.viz.spectrum import plot_spectrum

__all__ = ["plot_spectrum"]
