"""What the CLI prints: rich tables of predictions and verifications, progress bars."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from collapsekit.theory.prediction import Prediction, _fmt, _symbol


def console() -> Console:
    """A console on the current stdout (so redirection and capture work)."""
    # Off a terminal rich would wrap at 80 columns; tables of ten columns need more.
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)


def _num(value: float, digits: int = 4) -> str:
    if math.isinf(value):
        return "never" if value > 0 else "—"
    return f"{value:.{digits}g}"


def _state(prediction: Prediction, i: int) -> str:
    if prediction.collapsed[i]:
        return "[red]collapsed[/red]"
    if prediction.inactive[i]:
        return "[yellow]inactive[/yellow] (σ≠η_enc)"
    return "[green]active[/green]"


def prediction_table(prediction: Prediction) -> Table:
    """Per latent dimension: θ, threshold, singular values, state, KL (nats), critical β."""
    mh = prediction.model == "mhvae"
    beta_name = "β₂" if mh else "β"
    table = Table(title=f"{prediction.theorem}", title_justify="left")
    table.add_column("z₂ dim" if mh else "dim", justify="right")
    table.add_column("θ", justify="right")
    table.add_column("threshold", justify="right")
    if mh:
        table.add_column("z₁ λ", justify="right")
    table.add_column("ω decoder", justify="right")
    table.add_column("σ encoder std", justify="right")
    table.add_column("state")
    table.add_column("KL (nats)", justify="right")
    table.add_column(f"critical {beta_name}", justify="right")
    for i in range(prediction.latent_dim):
        row = [str(i + 1), _num(prediction.theta[i]), _num(prediction.threshold[i])]
        if mh:
            assert prediction.level1 is not None
            row.append(_num(prediction.level1["encoder_sv"][i]))
        row += [_num(prediction.decoder_sv[i]), _num(prediction.encoder_std[i]), _state(prediction, i),
                _num(prediction.kl_per_dim[i]), _num(prediction.critical_beta[i])]
        table.add_row(*row)
    return table


def grid_table(predictions: Sequence[Prediction]) -> Table:
    """One row per setting of a hyper-parameter grid."""
    first = predictions[0].hyperparameters
    varying = [k for k in first if len({repr(p.hyperparameters.get(k)) for p in predictions}) > 1]
    table = Table(title="hyper-parameter grid", title_justify="left")
    for name in varying:
        table.add_column(_symbol(name), justify="right")
    for name in ("active", "collapsed", "total KL (nats)", "loss (nats/example)"):
        table.add_column(name, justify="right")
    for p in predictions:
        table.add_row(*[_fmt(p.hyperparameters[k]) for k in varying],
                      f"{p.n_active}/{p.latent_dim}", str(p.n_collapsed), _num(p.kl), _num(p.loss, 8))
    return table


def print_predictions(predictions: Sequence[Prediction], *, data_name: str) -> None:
    """A detailed table for one prediction; a grid table plus one verdict per setting for several."""
    out = console()
    out.print(f"data: {data_name}; spectrum: {predictions[0].spectrum.size} values, "
              f"largest θ = {_num(predictions[0].spectrum[0])}")
    if len(predictions) == 1:
        out.print(prediction_table(predictions[0]))
    else:
        out.print(grid_table(predictions))
    for p in predictions:
        out.print(f"[bold]verdict:[/bold] {p.verdict()}", soft_wrap=True)


def print_recommendation(model: str, target: int, beta: float) -> None:
    """The largest β (β₂) keeping ``target`` dimensions active."""
    name = "β₂" if model == "mhvae" else "β"
    critical = float(np.nextafter(beta, np.inf))   # recommend_beta returns the largest float below it
    console().print(f"[bold]recommendation:[/bold] keep {name} < {critical:.6g} for at least {target} active "
                    f"dimensions (at {name} = {critical:.6g} the {_ordinal(target)} one collapses)", soft_wrap=True)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def print_verifications(results: Sequence[Any]) -> None:
    """Closed form against numerical minimisation, one row per setting."""
    table = Table(title="closed form against direct minimisation (nats per example)", title_justify="left")
    for name in ("setting", "closed form", "numerical", "relative gap", "max |Δ sv|", "verdict"):
        table.add_column(name, justify="right")
    for r in results:
        setting = ", ".join(f"{_symbol(k)}={_fmt(v)}" for k, v in r.prediction.hyperparameters.items())
        table.add_row(setting, f"{r.prediction.loss:.10g}", f"{r.numerical_loss:.10g}", f"{r.relative_gap:.2e}",
                      f"{r.max_sv_error:.2e}", "[green]agrees[/green]" if r.agrees else "[red]DISAGREES[/red]")
    console().print(table)


@contextlib.contextmanager
def progress(total: int, description: str, *, quiet: bool = False) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr; yields a function that advances it by one."""
    if quiet or total <= 1:
        yield lambda: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
