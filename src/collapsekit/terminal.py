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
def progress(total: int, description: str, *, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr; yields a function that advances it by its argument (default one)."""
    if quiet or total <= 1:
        yield lambda steps=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda steps=1: bar.advance(task, steps)


class _TrainingBar:
    """Training progress on stderr, from host values only (nothing here reads a device tensor).

    On a terminal: a bar over all steps, advanced every ``every`` steps, showing the epoch and the
    last finished epoch's loss terms. Elsewhere (a log file, a pipe): one line per epoch.
    """

    def __init__(self, bar: Progress | None, task: Any, epochs: int, *, every: int = 10, lines: bool = False) -> None:
        self._bar, self._task, self._epochs, self._every, self._lines = bar, task, epochs, every, lines
        self._count = 0

    def start_epoch(self, epoch: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, epoch=f"epoch {epoch}/{self._epochs}")

    def advance(self) -> None:
        """One optimiser step done."""
        if self._bar is None:
            return
        self._count += 1
        if self._count == self._every:
            self._bar.update(self._task, advance=self._count)
            self._count = 0

    def end_epoch(self, record: dict[str, Any]) -> None:
        """An epoch's metrics record (host values, already read once for the whole epoch)."""
        collapsed = record.get("collapsed_dims")
        size = len(record["kl_per_dim"][-1]) if record.get("kl_per_dim") else 0
        active = size - len(collapsed[-1]) if collapsed and size else None
        if self._bar is not None:
            short = f"loss {record['loss']:.4g}  KL {record['kl']:.4g} nats"
            self._bar.update(self._task, advance=self._count,
                             terms=short + ("" if active is None else f"  {active}/{size} active"))
            self._count = 0
        elif self._lines:
            line = (f"epoch {record['epoch']}/{self._epochs}: loss {record['loss']:.4g}, reconstruction "
                    f"{record['reconstruction']:.4g}, KL {record['kl']:.4g} nats")
            print(line + ("" if active is None else f"; {active} of {size} dimensions active"), file=sys.stderr,
                  flush=True)


@contextlib.contextmanager
def training_progress(epochs: int, steps_per_epoch: int, *, enabled: bool,
                      start_epoch: int = 0) -> Iterator[_TrainingBar]:
    """Training progress on stderr (nothing when ``enabled`` is false): a bar on a terminal, one line
    per epoch otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield _TrainingBar(None, None, epochs, lines=enabled)
        return
    columns = (TextColumn("training"), TextColumn("{task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[terms]}"))
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task("training", total=epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch,
                            epoch=f"epoch {start_epoch + 1}/{epochs}", terms="")
        yield _TrainingBar(bar, task, epochs)


def print_training_summary(result: Any) -> None:
    """Final losses and the per-dimension KL of the last epoch, sorted, per level (nats per example)."""
    out = console()
    if not result.metrics:
        out.print(f"nothing to train: {result.run_dir} already holds all {result.config.train.epochs} epochs")
        return
    last = result.metrics[-1]
    if result.resumed_from is not None and result.resumed_from >= result.config.train.epochs:
        out.print(f"{result.run_dir} had already finished its {result.config.train.epochs} epochs: nothing to "
                  "train (add --epochs N, more than that, to train further)", soft_wrap=True, markup=False)
    out.print(f"epoch {last['epoch']}: loss {last['loss']:.6g}, reconstruction {last['reconstruction']:.6g}, "
              f"KL {last['kl']:.6g} (nats per example)", soft_wrap=True)
    for level, values in enumerate(last["kl_per_dim"]):
        name = "z" if len(last["kl_per_dim"]) == 1 else f"z{level + 1}"
        table = Table(title=f"{name}: KL per dimension", title_justify="left")
        for column in ("rank", "dimension", "KL (nats/example)", "share"):
            table.add_column(column, justify="right")
        total = sum(values) or 1.0
        for rank, (dim, value) in enumerate(sorted(enumerate(values), key=lambda item: -item[1]), start=1):
            table.add_row(str(rank), str(dim), f"{value:.4g}", f"{value / total:.1%}")
        out.print(table)
    out.print(f"run directory: [bold]{result.run_dir}[/bold] (config.yaml, metrics.jsonl, checkpoints/)")


def print_measured_against_predicted(measured: dict[str, Any], prediction: Prediction, run_dir: Any) -> None:
    """Per-dimension KL of a trained model (sorted) beside the closed-form optimum's, nats per example."""
    kl = sorted(measured["kl_per_dim"][-1], reverse=True)
    table = Table(title="KL per dimension (nats/example)", title_justify="left")
    for column in ("rank", "measured", "predicted", "predicted state"):
        table.add_column(column, justify="right")
    for rank, (got, want, collapsed) in enumerate(zip(kl, prediction.kl_per_dim, prediction.collapsed), start=1):
        table.add_row(str(rank), f"{got:.4f}", f"{want:.4f}", "collapsed" if collapsed else "active")
    out = console()
    out.print(table)
    gap = (measured["loss"] - prediction.loss) / abs(prediction.loss)
    out.print(f"loss: trained {measured['loss']:.5f}, closed-form optimum {prediction.loss:.5f} nats per example "
              f"({gap:+.2%}); run directory: [bold]{run_dir}[/bold]", soft_wrap=True)


_stdout_console = console


def print_collapse_report(report: Any, console: Console | None = None, *, max_rows: int = 24) -> None:
    """A diagnosis in the terminal: verdict per level, explanations, likelihoods, and per level a
    table of the dimensions sorted by KL (measured beside predicted), with MI and its interval.

    ``report`` is a :class:`~collapsekit.diagnostics.report.CollapseReport`; at most ``max_rows``
    dimensions per level are listed (the largest KL first), the rest summarised in one line.
    """
    from rich.markup import escape

    from collapsekit.viz.report import dimension_rows, explanation_parts, likelihood_text, model_title, verdict

    out = console if console is not None else _stdout_console()
    model = report.model or {}
    hyper = ", ".join(f"{name} {_fmt(model[key])}" for key, name in
                      (("latent_dims", "latent"), ("beta", "β"), ("eta_enc", "η_enc"), ("eta_dec", "η_dec"),
                       ("epoch", "epoch")) if model.get(key) is not None)
    out.print(f"[bold]{escape(model_title(report))}[/bold]" + escape(f" — {hyper}" if hyper else "")
              + f"; {report.n_examples} examples", soft_wrap=True)
    for level in report.levels:
        colour = "red" if level.n_collapsed else "green"
        out.print(f"[bold {colour}]{verdict(level)}[/bold {colour}] "
                  f"(KL < ε = {level.epsilon:g} nats for ≥ {1 - level.delta:.0%} of examples)", soft_wrap=True)
    elbo, loglik = likelihood_text(report)
    out.print(escape(f"ELBO: {elbo}; log-likelihood: {loglik}"), soft_wrap=True)

    for level in report.levels:
        theory = level.theory
        title = f"{level.name}: KL per dimension (nats), sorted"
        if theory is not None:
            title += f"; predicted = {theory.label}, by rank"
        table = Table(title=title, title_justify="left")
        for column in ("rank", "dim", "measured"):
            table.add_column(column, justify="right")
        if theory is not None:
            table.add_column("predicted (exact)" if theory.exact else "predicted (estimate)", justify="right")
        for column in ("Var E[z_j]", "I(x; z_j) (nats)"):
            table.add_column(escape(column), justify="right")
        table.add_column("type")
        table.add_column("state")
        rows = dimension_rows(level)
        for row in rows[:max_rows]:
            cells = [str(row["rank"]), str(row["dim"]), _num(row["kl"]) if row["kl"] is not None else "—"]
            if theory is not None:
                cells.append("—" if row["predicted"] is None else _num(row["predicted"]))
            cells += ["—" if row["variance_of_mean"] is None else _num(row["variance_of_mean"]),
                      "—" if row["mi"] is None else _num(row["mi"]), str(row["type"]),
                      "[red]collapsed[/red]" if row["collapsed"] else
                      ("[green]active[/green]" if row["active"] else "[yellow]not collapsed, inactive[/yellow]")]
            table.add_row(*cells)
        out.print(table)
        if len(rows) > max_rows:
            rest = rows[max_rows:]
            n_rest = sum(r["collapsed"] for r in rest)
            out.print(f"  … {len(rest)} more dimensions with smaller KL ({n_rest} of them collapsed)")
        ci = level.mutual_info_ci or []
        interval = f" [{_num(ci[0])}, {_num(ci[1])}]" if len(ci) == 2 else ""
        out.print(escape(f"  active units {level.active_units}/{level.latent_dim} (Var E[z_j] > "
                         f"{level.active_units_threshold:g}); rate {_num(level.rate)} nats; I(x; {level.name}) = "
                         f"{_num(level.mutual_info)} nats{interval}, minibatch {_num(level.mutual_info_minibatch)} "
                         f"(≤ log B = {_num(level.mutual_info_ceiling)})"), soft_wrap=True)
        if theory is not None:
            mark = "[green]agrees[/green]" if theory.agrees else "[red]differs[/red]"
            out.print(escape(f"  theory ({theory.label}, {theory.theorem}): {theory.n_active_predicted} active "
                             f"predicted, {theory.n_active_measured} measured — ") + mark
                      + escape(f": {theory.difference()}" if not theory.agrees else ""), soft_wrap=True)

    if report.explanations:
        out.print("[bold]explanations:[/bold]")
        for item in report.explanations:
            lvl, cause, message, prescription = explanation_parts(item)
            where = f" ({lvl})" if lvl else ""
            out.print(f"  • [bold]{escape(cause or 'cause')}[/bold]{escape(where)}: {escape(message)}",
                      soft_wrap=True)
            if prescription:
                out.print(f"    [cyan]→ {escape(prescription)}[/cyan]", soft_wrap=True)
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/dim]", soft_wrap=True)
