"""One-axis sweeps, the shape of most of the paper's experiments: vary one hyper-parameter with
the others fixed, measure every trained model, and draw measured against predicted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsekit.experiments.reproduction.closed_form import closed_form_curve, spectrum_moments
from collapsekit.experiments.reproduction.context import Context
from collapsekit.experiments.reproduction.outputs import MEASURE_COLUMNS, Column
from collapsekit.experiments.reproduction.runs import measure, train_grid
from collapsekit.experiments.reproduction.verdicts import arrow, trend_claim
from collapsekit.viz.reproduction import Panel

if TYPE_CHECKING:
    from collapsekit.training import RunConfig

#: The first columns of a one-axis-sweep table.
AXIS_COLUMNS: tuple[Column, ...] = (Column("varied", "varied"), Column("value", "value (true)"),
                                    Column("paper_value", "paper value"))


@dataclass
class Axis:
    """One sweep of a preset.

    Attributes
    ----------
    key : str
        The grid key varied (``beta``, ``eta_dec``, ``beta1``, ``beta2``, ``eta_enc``, ...).
    symbol : str
        How tables and figures name it (``β``).
    values : list of float
        The values trained (true β where β is meant).
    paper : list of float
        The paper's values, in the same order (nominal β where the paper's script halves it).
    base : RunConfig
        Every other setting.
    direction : {"down", "up"} or None
        The paper's claim on the measured quantity as the value grows; None: no claim.
    fixed : str
        The other settings, for the panel's title (``η_dec = 1``).
    """

    key: str
    symbol: str
    values: list[float]
    paper: list[float]
    base: RunConfig
    direction: str | None
    fixed: str

    @property
    def log(self) -> bool:
        """Values spanning a factor of 10 or more are drawn on a log axis."""
        return min(self.values) > 0 and max(self.values) / min(self.values) >= 10


def run_axes(ctx: Context, axes: Sequence[Axis], seed: int, *, max_examples: int | None = None,
             what: str = "active dims", quantity: str = "n_active_measured") -> tuple[list[dict[str, Any]],
                                                                                      list[Panel],
                                                                                      list[tuple[bool | None, str]]]:
    """Train and measure every axis; return the table rows, one figure panel per axis, and one
    sub-verdict per axis that carries a claim (judged on ``quantity``, named ``what``)."""
    rows: list[dict[str, Any]] = []
    panels: list[Panel] = []
    claims: list[tuple[bool | None, str]] = []
    for axis in axes:
        points = train_grid(ctx, axis.key, axis.base, {axis.key: axis.values}, seed)
        measured = []
        for point, value, paper in zip(points, axis.values, axis.paper):
            measured.append({"varied": axis.symbol, "value": value, "paper_value": paper,
                             **measure(ctx, point, max_examples=max_examples)})
        rows += measured
        moments = spectrum_moments(ctx, axis.base)
        curve = closed_form_curve(axis.base, axis.key, axis.values, seed, moments, log=axis.log)
        label = next((m["theory"] for m in measured if m["theory"]), "theory")
        panels.append(Panel(title=f"varying {axis.symbol} ({axis.fixed})", xlabel=axis.symbol, xs=list(axis.values),
                            measured=[m["n_active_measured"] for m in measured],
                            predicted=[m["n_active_predicted"] for m in measured], curve=curve,
                            theory_label=label, kl=[m["kl_nats"] for m in measured], log=axis.log,
                            latent_size=measured[0]["latent_size"]))
        if axis.direction is not None:
            # the theory's active count predicts Burda's active units too (a zero mode has a constant mean)
            holds, text = trend_claim(axis.symbol, axis.values, [m[quantity] for m in measured],
                                      [m["n_active_predicted"] for m in measured], axis.direction, what=what)
            order = np.argsort(np.asarray(axis.values, dtype=float), kind="stable")
            claims.append((holds, f"{text} [KL (nats) {arrow([measured[i]['kl_nats'] for i in order])}]"))
    return rows, panels, claims


def axis_columns() -> list[Column]:
    """The columns of a one-axis-sweep table."""
    return [*AXIS_COLUMNS, *MEASURE_COLUMNS]


def halved(values: Sequence[float]) -> list[float]:
    """True β of the paper's nominal values in its nonlinear scripts (see ``HALVED_NOTE``)."""
    return [float(v) / 2 for v in values]


