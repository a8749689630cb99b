"""The run's final evaluation: the headline count of active dimensions on the final weights.

At the end of ``train`` the trained model is measured once on the run's data (the data the configuration
names, after its views) and the result is written to ``RUN/evaluation.json``. The trainer's final line, a
sweep's ``summary.csv`` and ``diagnose RUN`` (same data, same defaults) then report the same count, because
they all apply :mod:`collapsekit.activity`'s rule to the same measurement
(:func:`collapsekit.diagnostics.headline.measure_activity`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from collapsekit._io import atomic_path
from collapsekit._validation import zero_beta_note
from collapsekit.activity import DEFINITION, LevelActivity, level_activity, summary_level
from collapsekit.diagnostics.headline import measure_activity
from collapsekit.training.validation import training_summary

EVALUATION_FILE = "evaluation.json"
#: Version of the layout of ``evaluation.json``.
EVALUATION_FORMAT = 1


def evaluation_record(levels: list[LevelActivity], *, epoch: int, examples: int, data: str,
                      part: str | None, notes: list[str] | None = None,
                      training: dict[str, Any] | None = None, held_out: int | None = None) -> dict[str, Any]:
    """The JSON-ready record of a final evaluation (what ``evaluation.json`` holds); ``held_out``: the validation
    examples kept out of the data measured."""
    top = summary_level(levels)
    record = {"format": EVALUATION_FORMAT, "definition": DEFINITION,
            "measured_on": {"weights": "final", "epoch": int(epoch), "data": data, "part": part,
                            "examples": int(examples)},
            "n_active": top.n_active, "latent_size": top.latent_size, "summary_level": top.name,
            "levels": [{"name": lv.name, "n_active": lv.n_active, "latent_size": lv.latent_size,
                        "active": lv.active, "kl_per_dim": list(lv.kl_per_dim)} for lv in levels],
            "units": "nats per example"}
    if held_out is not None:
        record["measured_on"]["validation_held_out"] = int(held_out)
    if training is not None:
        record["training"] = training
    if notes:
        record["notes"] = list(notes)
    return record


def evaluate_run(model: nn.Module, x: Any, y: Any, *, epoch: int, data: str, part: str | None,
                 notes: list[str] | None = None, training: dict[str, Any] | None = None,
                 held_out: int | None = None) -> dict[str, Any]:
    """Measure the headline count of ``model`` on ``(x, y)`` and return its record."""
    levels = measure_activity(model, x, y)
    return evaluation_record(levels, epoch=epoch, examples=int(x.shape[0]), data=data, part=part, notes=notes,
                             training=training, held_out=held_out)


def run_notes(config: Any) -> list[str]:
    """What a run's outputs must say about its configuration: that the collapse theory does not apply at β = 0."""
    note = zero_beta_note(config.objective.beta) if config.objective.name == "elbo" else None
    return [] if note is None else [note]


def record_final_evaluation(result: Any, data: Any) -> dict[str, Any]:
    """Measure a finished run (a :class:`~collapsekit.training.trainer.RunResult` with its model), store the
    record on ``result.evaluation`` and in the run directory's ``evaluation.json``; return it."""
    epoch = int(result.metrics[-1]["epoch"]) if result.metrics else 0
    result.evaluation = evaluate_run(result.model, data.x, data.y, epoch=epoch, data=result.config.data.spec,
                                     part=result.config.data.part, notes=run_notes(result.config),
                                     training=training_summary(result.config, result.metrics),
                                     held_out=None if getattr(data, "validation", None) is None else data.validation.n)
    write_evaluation(result.run_dir, result.evaluation)
    return result.evaluation


def write_evaluation(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``evaluation.json`` atomically into the run directory."""
    path = Path(run_dir) / EVALUATION_FILE
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_evaluation(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``evaluation.json``, or None for a run that has none (unfinished, or older)."""
    path = Path(run_dir) / EVALUATION_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def levels_of(record: dict[str, Any]) -> list[LevelActivity]:
    """The :class:`LevelActivity` of each level of an evaluation record."""
    return level_activity([(level["name"], level["kl_per_dim"]) for level in record["levels"]])
