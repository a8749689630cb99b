"""What a preset run produced (:class:`PresetResult`) and its files: ``table.csv``, ``table.md``, ``result.json``."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsekit._io import atomic_path, jsonable
from collapsekit.experiments.reproduction.context import Context
from collapsekit.experiments.reproduction.verdicts import Verdict
from collapsekit.experiments.sweep.theory import predicted_cell
from collapsekit.formatting import cell


@dataclass(frozen=True)
class Column:
    """A column of a preset's table: row key, header (with units) and significant digits.

    ``show`` gives the Markdown cell where it says more than the row's value (an estimated count with its
    interval); ``table.csv`` keeps the value itself. A column with ``markdown`` False is in ``table.csv`` and
    ``result.json`` only (machine-readable detail the Markdown cell of another column already shows)."""

    key: str
    header: str
    digits: int = 4
    show: Callable[[Mapping[str, Any]], str] | None = None
    markdown: bool = True


def theory_cell(row: Mapping[str, Any]) -> str:
    """A row's theory column: the prediction's label, and for an estimate the benchmark's measured accuracy for
    the run's regime (``theory_accuracy``, the clause the diagnose reports quote), e.g. "linear-theory estimate;
    within ±1 on 40 % of the 30 benchmark runs with a learned η_dec"."""
    label, accuracy = row.get("theory"), row.get("theory_accuracy")
    if label is None:
        return cell(None)
    return f"{label}; {accuracy}" if accuracy else str(label)


#: Columns every training preset shows after its own. An estimated count (a nonlinear model) shows its interval
#: and its theory cell the benchmark's accuracy; an exact one the bare count and "exact".
MEASURE_COLUMNS: tuple[Column, ...] = (
    Column("n_active_predicted", "active dims predicted", show=predicted_cell),
    Column("n_active_predicted_lo", "predicted interval: low", markdown=False),
    Column("n_active_predicted_hi", "predicted interval: high", markdown=False),
    Column("n_active_measured", "active dims measured (KL ≥ 0.01 nats)"),
    Column("latent_size", "latent size"),
    Column("kl_nats", "KL (nats)"),
    Column("nll_nats", "NLL (nats)"),
    Column("active_units", "AU (Burda)"),
    Column("theory", "theory", show=theory_cell),
    Column("theory_accuracy", "benchmark accuracy of the estimate", markdown=False),
)


@dataclass
class PresetResult:
    """What a preset run produced: its table, figure, verdict and notes."""

    name: str
    paper_id: str
    title: str
    description: str
    claim: str
    scale: str
    data: str
    out_dir: Path
    rows: list[dict[str, Any]]
    columns: list[Column]
    verdict: Verdict
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    figure: Path | None = None
    seconds: float = 0.0

    def sentence(self) -> str:
        """The verdict as one sentence."""
        return f"The paper's claim {self.verdict.word} at {self.scale} scale: {self.verdict.evidence}."

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return jsonable({
            "preset": self.name, "paper_id": self.paper_id, "title": self.title, "description": self.description,
            "claim": self.claim, "scale": self.scale, "data": self.data, "settings": self.settings,
            "verdict": {"holds": self.verdict.holds, "verdict": self.verdict.word, "evidence": self.verdict.evidence,
                        "sentence": self.sentence()},
            "notes": self.notes, "columns": [{"key": c.key, "header": c.header} for c in self.columns],
            "rows": self.rows, "figure": None if self.figure is None else self.figure.name,
            "seconds": round(self.seconds, 1)})


def for_preset(ctx: Context, *, data: str, rows: list[dict[str, Any]], columns: Sequence[Column], verdict: Verdict,
               settings: Mapping[str, Any], figure: Path | None) -> PresetResult:
    """A :class:`PresetResult` with the preset's identity and the context's notes."""
    p = ctx.preset
    return PresetResult(name=p.name, paper_id=p.paper_id, title=p.title, description=p.description, claim=p.claim,
                        scale=ctx.scale, data=data, out_dir=ctx.out_dir, rows=rows, columns=list(columns),
                        verdict=verdict, notes=list(ctx.notes), settings=dict(settings), figure=figure)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A GitHub-flavoured Markdown table."""
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    shown = [c for c in columns if c.markdown]
    lines = ["| " + " | ".join(escape(c.header) for c in shown) + " |",
             "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(escape(_markdown_cell(row, c)) for c in shown) + " |" for row in rows]
    return "\n".join(lines)


def _markdown_cell(row: Mapping[str, Any], column: Column) -> str:
    if column.show is None:
        return cell(row.get(column.key), column.digits)
    return column.show(row) or cell(None)                 # nothing to show reads as a missing value


def markdown_body(result: PresetResult, figure_link: str | None) -> str:
    """The part of ``table.md`` the combined report repeats: claim, notes, figure, table, verdict."""
    parts = [result.description, "", f"**Paper's claim.** {result.claim}", "",
             f"**Scale:** {result.scale}. **Data:** {result.data}."]
    if result.notes:
        parts += ["", *[f"- {note}" for note in result.notes]]
    if figure_link:
        parts += ["", f"![{result.paper_id} {result.name}]({figure_link})"]
    parts += ["", markdown_table(result.rows, result.columns), "", f"**Verdict: {result.verdict.word}.** "
              f"{result.sentence()}"]
    return "\n".join(parts)


def write_outputs(result: PresetResult) -> dict[str, Path]:
    """Write ``table.csv``, ``table.md`` and ``result.json`` into the preset's directory (atomically)."""
    out = result.out_dir
    paths = {"csv": out / "table.csv", "md": out / "table.md", "json": out / "result.json"}
    with atomic_path(paths["csv"]) as temporary, open(temporary, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([c.key for c in result.columns])
        writer.writerows([_csv_cell(row.get(c.key)) for c in result.columns] for row in result.rows)
    figure = result.figure.name if result.figure is not None else None
    text = f"# {result.paper_id} · {result.name}: {result.title}\n\n{markdown_body(result, figure)}\n"
    with atomic_path(paths["md"]) as temporary:
        temporary.write_text(text, encoding="utf-8")
    with atomic_path(paths["json"]) as temporary:
        temporary.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
