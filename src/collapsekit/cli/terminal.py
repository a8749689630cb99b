"""What the CLI prints: rich tables of predictions and verifications.

Progress bars live in :mod:`collapsekit._progress`, where the trainer and the sweep may use them too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.markup import escape

from collapsekit.activity import KL_ACTIVE_THRESHOLD, count_active
from collapsekit.formatting import MISSING, cell
from collapsekit.theory.prediction import Prediction, format_setting, symbol


def console() -> Console:
    """A console on the current stdout (so redirection and capture work)."""
    # Off a terminal rich would wrap at 80 columns; tables of ten columns need more.
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)


def _num(value: float, digits: int = 4) -> str:
    """A number of the theory's tables; an infinite critical β is "never"."""
    if math.isinf(value):
        return "never" if value > 0 else MISSING
    return cell(value, digits)


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
        table.add_column(symbol(name), justify="right")
    for name in ("active (KL ≥ 0.01 nats)", "collapsed (posterior = prior)", "total KL (nats)", "loss (nats/example)"):
        table.add_column(name, justify="right")
    for p in predictions:
        table.add_row(*[format_setting(p.hyperparameters[k]) for k in varying],
                      f"{p.n_active_headline}/{p.latent_dim}", str(p.n_collapsed), _num(p.kl), _num(p.loss, 8))
    return table


def print_predictions(predictions: Sequence[Prediction], *, data_name: str) -> None:
    """A detailed table for one prediction; a grid table plus one verdict per setting for several."""
    out = console()
    out.print(f"data: {escape(data_name)}; spectrum: {predictions[0].spectrum.size} values, "
              f"largest θ = {_num(predictions[0].spectrum[0])}")
    if len(predictions) == 1:
        out.print(prediction_table(predictions[0]))
    else:
        out.print(grid_table(predictions))
    for p in predictions:
        out.print(f"[bold]verdict:[/bold] {escape(p.verdict())}", soft_wrap=True)


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
        setting = ", ".join(f"{symbol(k)}={format_setting(v)}" for k, v in r.prediction.hyperparameters.items())
        table.add_row(setting, f"{r.prediction.loss:.10g}", f"{r.numerical_loss:.10g}", f"{r.relative_gap:.2e}",
                      f"{r.max_sv_error:.2e}", "[green]agrees[/green]" if r.agrees else "[red]DISAGREES[/red]")
    console().print(table)


def print_training_summary(result: Any) -> None:
    """Final losses and the per-dimension KL of the last epoch, sorted, per level (nats per example)."""
    out = console()
    if not result.metrics:
        out.print(f"nothing to train: {result.run_dir} already holds all {result.config.train.epochs} epochs",
                  markup=False)
        return
    last = result.metrics[-1]
    stopped = getattr(result, "stopped", None)
    if stopped and result.resumed_from is not None and result.resumed_from >= stopped["epoch"]:
        out.print(f"{result.run_dir} stopped early at epoch {stopped['epoch']} ({stopped['message']}): it is "
                  "finished, nothing to train (train into another --out to train longer or otherwise)",
                  soft_wrap=True, markup=False)
    elif result.resumed_from is not None and result.resumed_from >= result.config.train.epochs:
        out.print(f"{result.run_dir} had already finished its {result.config.train.epochs} epochs: nothing to "
                  "train (add --epochs N, more than that, to train further)", soft_wrap=True, markup=False)
    out.print(f"epoch {last['epoch']}: loss {last['loss']:.6g}, reconstruction {last['reconstruction']:.6g}, "
              f"KL {last['kl']:.6g} (nats per example, averaged over the epoch's batches)", soft_wrap=True)
    if "val_loss" in last:
        out.print(f"validation ({last['val_examples']} held-out examples): loss {last['val_loss']:.6g}, "
                  f"reconstruction {last['val_reconstruction']:.6g}, KL {last['val_kl']:.6g}; "
                  + "; ".join(f"{n} of {len(kl)} active" for n, kl in zip(last["val_n_active"], last["val_kl_per_dim"])),
                  soft_wrap=True)
    if stopped:
        training = (getattr(result, "evaluation", None) or {}).get("training", {})
        best = training.get("best_checkpoint")
        out.print(f"[bold]stopped early at epoch {stopped['epoch']}:[/bold] "
                  + escape(f"{stopped['message']}; the final weights are epoch {stopped['final_weights_epoch']}'s"
                           + (f", the best epoch's are in {result.run_dir / best}" if best else "")), soft_wrap=True)
    evaluation = getattr(result, "evaluation", None)
    if evaluation is None:
        levels = [("z" if len(last["kl_per_dim"]) == 1 else f"z{i + 1}", values)
                  for i, values in enumerate(last["kl_per_dim"])]
        where = "the last epoch's batches"
    else:
        levels = [(level["name"], level["kl_per_dim"]) for level in evaluation["levels"]]
        where = "the final weights"
    for name, values in levels:
        table = Table(title=f"{name}: KL per dimension ({where})", title_justify="left")
        for column in ("rank", "dimension", "KL (nats/example)", "share"):
            table.add_column(column, justify="right")
        total = sum(values) or 1.0
        for rank, (dim, value) in enumerate(sorted(enumerate(values), key=lambda item: -item[1]), start=1):
            table.add_row(str(rank), str(dim), f"{value:.4g}", f"{value / total:.1%}")
        out.print(table)
    if evaluation is not None:
        out.print(f"[bold]{escape(training_headline(evaluation))}[/bold]", soft_wrap=True)
        for note in evaluation.get("notes", []):
            out.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
    out.print(f"run directory: [bold]{escape(str(result.run_dir))}[/bold] (config.yaml, metrics.jsonl, "
              "evaluation.json, checkpoints/)", soft_wrap=True)


def training_headline(evaluation: dict[str, Any]) -> str:
    """``"z: 11 of 16 dimensions active (mean KL ≥ 0.01 nats, final weights on digits, 1797 examples)"``, per
    level of a hierarchy (the top level last: the summary)."""
    where = evaluation["measured_on"]
    data = where["data"] + (f", {where['part']} part" if where.get("part") else "")
    if where.get("validation_held_out"):
        data += f" less {where['validation_held_out']} validation examples"
    counts = "; ".join(f"{lv['name']}: {lv['n_active']} of {lv['latent_size']}" for lv in evaluation["levels"])
    return (f"{counts} dimensions active (mean KL ≥ {KL_ACTIVE_THRESHOLD:g} nats per example; final weights, "
            f"epoch {where['epoch']}, on {data}, {where['examples']} examples)")


def print_measured_against_predicted(measured: dict[str, Any], prediction: Prediction, run_dir: Any,
                                     evaluation: dict[str, Any] | None = None) -> None:
    """Per-dimension KL of a trained model (sorted) beside the closed-form optimum's, nats per example, and the
    headline counts of both. ``evaluation`` (the run's ``evaluation.json``) gives the measured KL when present."""
    values = evaluation["levels"][-1]["kl_per_dim"] if evaluation is not None else measured["kl_per_dim"][-1]
    kl = sorted(values, reverse=True)
    table = Table(title="KL per dimension (nats/example)", title_justify="left")
    for column in ("rank", "measured", "predicted", "predicted state"):
        table.add_column(column, justify="right")
    for rank, (got, want, collapsed) in enumerate(zip(kl, prediction.kl_per_dim, prediction.collapsed), start=1):
        table.add_row(str(rank), f"{got:.4f}", f"{want:.4f}", "collapsed" if collapsed else "active")
    out = console()
    out.print(table)
    out.print(f"[bold]active dimensions (mean KL ≥ {KL_ACTIVE_THRESHOLD:g} nats): measured {count_active(kl)} of "
              f"{len(kl)} on the final weights, predicted {prediction.n_active_headline} of {prediction.latent_dim} "
              "(the closed form's KL, the same rule)[/bold]", soft_wrap=True)
    gap = (measured["loss"] - prediction.loss) / abs(prediction.loss)
    out.print(f"loss: trained {measured['loss']:.5f}, closed-form optimum {prediction.loss:.5f} nats per example "
              f"({gap:+.2%}); run directory: [bold]{escape(str(run_dir))}[/bold]", soft_wrap=True)


_stdout_console = console


def print_collapse_report(report: Any, console: Console | None = None, *, max_rows: int = 24) -> None:
    """A diagnosis in the terminal: verdict per level, explanations, likelihoods, and per level a
    table of the dimensions sorted by KL (measured beside predicted), with MI and its interval.

    ``report`` is a :class:`~collapsekit.diagnostics.report.CollapseReport`; at most ``max_rows``
    dimensions per level are listed (the largest KL first), the rest summarised in one line.
    """

    from collapsekit.viz.report_text import (dimension_rows, explanation_parts, headline, likelihood_text,
                                             metric_lines, mi_line, model_title, verdict)

    out = console if console is not None else _stdout_console()
    model = report.model or {}
    hyper = ", ".join(f"{name} {format_setting(model[key])}" for key, name in
                      (("latent_dims", "latent"), ("beta", "β"), ("eta_enc", "η_enc"), ("eta_dec", "η_dec"),
                       ("epoch", "epoch")) if model.get(key) is not None)
    out.print(f"[bold]{escape(model_title(report))}[/bold]" + escape(f" — {hyper}" if hyper else "")
              + f"; {report.n_examples} examples", soft_wrap=True)
    if report.levels:
        colour = "red" if report.summary_level.n_collapsed else "green"
        out.print(f"[bold {colour}]{escape(headline(report))}[/bold {colour}]", soft_wrap=True)
    if len(report.levels) > 1:
        for level in report.levels:
            out.print(escape(f"  {verdict(level)} (mean KL < 0.01 nats)"), soft_wrap=True)
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
        table.add_column("state")
        for column in ("Var E[z_j]", "Burda AU", "(ε,δ)-collapsed", "I(x; z_j) (nats)"):
            table.add_column(escape(column), justify="right")
        table.add_column("type")
        rows = dimension_rows(level)
        for row in rows[:max_rows]:
            cells = [str(row["rank"]), str(row["dim"]), _num(row["kl"]) if row["kl"] is not None else MISSING]
            if theory is not None:
                cells.append(MISSING if row["predicted"] is None else _num(row["predicted"]))
            cells += ["[red]collapsed[/red]" if row["collapsed"] else "[green]active[/green]",
                      MISSING if row["variance_of_mean"] is None else _num(row["variance_of_mean"]),
                      "yes" if row["burda_active"] else "no", "yes" if row["eps_delta_collapsed"] else "no",
                      MISSING if row["mi"] is None else _num(row["mi"]), str(row["type"])]
            table.add_row(*cells)
        out.print(table)
        if len(rows) > max_rows:
            rest = rows[max_rows:]
            n_rest = sum(r["collapsed"] for r in rest)
            out.print(f"  … {len(rest)} more dimensions with smaller KL ({n_rest} of them collapsed)")
        out.print(escape(f"  Burda AU {level.active_units}/{level.latent_dim} (Var E[z_j] > "
                         f"{level.active_units_threshold:g}); rate {_num(level.rate)} nats; {mi_line(level)}"),
                  soft_wrap=True)
        for name, value in metric_lines(level):
            out.print(escape(f"  {name}: {value}"), soft_wrap=True)
        if theory is not None:
            mark = "[green]agrees[/green]" if theory.agrees else "[red]differs[/red]"
            out.print(escape(f"  theory ({theory.label}, {theory.theorem}): {theory.n_active_predicted} active "
                             f"predicted{theory.qualifier}, {theory.n_active_measured} measured — ") + mark
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


_DOCTOR_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def print_doctor_report(report: Any) -> None:
    """One line per check of a :class:`~collapsekit.checkup.DoctorReport`: status, name, evidence; the fix below."""
    out = console()
    out.print(f"collapsekit doctor: {escape(report.model)}")
    for check in report.checks:
        style = _DOCTOR_STYLE[check.status]
        out.print(f"  [{style}]{check.status:<4}[/{style}]   {check.name}: {escape(check.message)}")
        if check.fix:
            out.print(f"         fix: {escape(check.fix)}")
    for skipped in report.skipped:
        out.print(f"  [dim]skip[/dim]   {skipped.name}: {escape(skipped.reason)}")
    for note in report.notes:
        out.print(f"  [dim]note: {escape(note)}[/dim]")
