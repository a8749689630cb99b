"""A pilot run for the early forecast where the run's own prefix says nothing about its end (scored by the
benchmark, not used by ``collapsekit forecast``: docs/forecast.md §4; not the β-grid pilot of
:func:`~collapsekit.forecast.recommend.recommend_beta`, which trains the run's own prefixes).

The early-training forecast (:mod:`.early`) reads the first epochs of the run itself, which works only where the
prefix is the run's beginning. A cyclical schedule, a β warm-up longer than the prefix or a budget that buys no
whole epoch make it fall back to the closed form. A *pilot* is a separate short run of at most ⌊budget · steps⌋
optimiser steps (partial epochs allowed) with the run's model, data, seed, optimiser and β, whose schedule is
replaced by one of:

* ``compressed`` — the run's schedule squeezed into the pilot's steps (a warm-up over the same share of the pilot,
  the cycles of a cyclical schedule within the pilot);
* ``final`` — a constant β factor at the schedule's last value (the β the run ends at);
* ``mean`` — a constant β factor at the schedule's mean over the run;
* ``fast_compressed``, ``fast_final`` — as ``compressed`` and ``final``, with the learning rate multiplied by
  steps of the run / steps of the pilot: Adam moves each parameter by about its learning rate per step, so the
  pilot can travel as far as the whole run does (the argument of
  :func:`~collapsekit.forecast.closed_form.eta_reach`); its last chunk stands for the run's end.

Its per-dimension KL, averaged over :data:`CHUNKS` equal chunks of its steps, is extrapolated like an early prefix
(:func:`~collapsekit.diagnostics.forecast_kernel.extrapolate`, in chunks) to the configured run's last step (a
``fast_`` pilot's is read as it is: its last step stands for the run's). A pilot
is *not* the run's prefix: ``collapsekit train --resume`` cannot continue it, and it is trained and discarded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from collapsekit.diagnostics.forecast_kernel import FLOOR, extrapolate
from collapsekit.errors import ParameterError

__all__ = ["CHUNKS", "VARIANTS", "pilot_config", "pilot_ending", "pilot_steps", "train_pilot"]

#: Chunks the pilot's steps are averaged over: its KL trajectory has this many rows.
CHUNKS = 6
VARIANTS = ("compressed", "final", "mean", "fast_compressed", "fast_final")


def pilot_steps(config: Any, n: int, budget: float) -> int:
    """Optimiser steps a pilot may take: ⌊budget · steps of the configured run⌋."""
    from collapsekit.forecast.closed_form import total_steps

    return int(math.floor(budget * total_steps(config, n) + 1e-9))


def _schedule_mean(config: Any, total: int) -> float:
    from collapsekit.objectives import build_schedule

    schedule = build_schedule(config.schedule.name, **config.schedule.settings)
    return float(np.mean([schedule.value(t) for t in range(total)]))


def pilot_config(config: Any, n: int, steps: int, variant: str) -> Any:
    """The pilot's configuration: the run's, with the schedule ``variant`` says (see the module's docstring)."""
    from collapsekit.forecast.closed_form import final_beta_scale, total_steps

    if variant not in VARIANTS:
        raise ParameterError(f"unknown pilot variant {variant!r} ({', '.join(VARIANTS)})")
    name, settings = config.schedule.name, dict(config.schedule.settings)
    total = total_steps(config, n)
    if variant.startswith("fast_"):
        config = config.with_overrides({"optim.lr": config.optim.lr * total / steps})
        variant = variant[len("fast_"):]
    if name == "capacity" or config.optim.lr_schedule != "constant":
        raise ParameterError("a pilot needs a β schedule and a constant learning rate")
    if variant == "compressed" or name == "constant":
        if name in ("linear", "sigmoid"):
            settings["warmup_steps"] = int(round(int(settings.get("warmup_steps", 0)) * steps / total))
        elif name == "cyclical":
            settings["total_steps"] = steps
            settings["n_cycles"] = min(int(settings.get("n_cycles", 4)), steps)
        return config.with_overrides({"schedule.settings": settings})
    scale = final_beta_scale(config, n) if variant == "final" else _schedule_mean(config, total)
    beta = config.objective.beta
    beta = [float(b) * scale for b in beta] if isinstance(beta, list) else float(beta) * scale
    return config.with_overrides({"schedule.name": "constant", "schedule.settings": {}, "objective.beta": beta})


def train_pilot(config: Any, data: Any, steps: int, *, chunks: int = CHUNKS) -> list[list[float]]:
    """Train a pilot of ``steps`` optimiser steps (``config``: from :func:`pilot_config`) the way the trainer
    trains the run (same seed, data order, sampling noise, gradient clip), in memory, and return the summary
    level's mean KL per dimension over each of ``chunks`` equal chunks of its steps (rows: chunks)."""
    import torch

    from collapsekit.training.builders import build_model_from_config, build_objective_from_config, build_optimizer
    from collapsekit.training.trainer import batch_bounds, epoch_seed

    if steps < chunks:
        raise ParameterError(f"a pilot of {steps} steps cannot be cut into {chunks} chunks")
    cfg = config
    torch.manual_seed(cfg.train.seed)
    model = build_model_from_config(cfg, data)
    objective, schedule = build_objective_from_config(cfg)
    optimizer = build_optimizer(cfg, list(model.parameters()))
    x, y = data.x, data.y
    bounds = batch_bounds(x.shape[0], cfg.train.batch_size)
    edges = [round(i * steps / chunks) for i in range(chunks + 1)]
    sums = [torch.zeros(0) for _ in range(chunks)]
    weights = [0.0] * chunks
    step, epoch = 0, 0
    model.train()
    while step < steps:
        epoch += 1
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(epoch_seed(cfg.train.seed, epoch)))
        torch.manual_seed(epoch_seed(cfg.train.seed, epoch, 1))
        for start, stop in bounds:
            if step >= steps:
                break
            batch = order[start:stop]
            output = model(x[batch], None if y is None else y[batch], n_samples=1)
            terms = objective(output, **{schedule.controls: schedule.value(step)})
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            if cfg.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=cfg.optim.grad_clip)
            optimizer.step()
            chunk = int(np.searchsorted(edges, step, side="right")) - 1
            kl = terms.kl_per_dim[-1].detach().double() * len(batch)
            sums[chunk] = kl if sums[chunk].numel() == 0 else sums[chunk] + kl
            weights[chunk] += len(batch)
            step += 1
    if not all(math.isfinite(float(s.sum())) for s in sums):
        raise ParameterError("the pilot diverged (a non-finite KL)")
    return [(s / w).tolist() for s, w in zip(sums, weights)]


def pilot_ending(trajectory: Any, pilot: int, total: int, *, gamma: float, variant: str = "final") -> np.ndarray:
    """Each dimension's KL at the configured run's last step (``total`` steps) from a pilot's chunk trajectory
    (``pilot`` steps in its rows), extrapolated in chunks (sorted, largest first); a ``fast_`` pilot's last chunk
    as it is."""
    rows = np.maximum(np.asarray(trajectory, float), FLOOR)
    if variant.startswith("fast_"):
        return np.sort(rows[-1])[::-1]
    per_chunk = pilot / rows.shape[0]
    ending = extrapolate(rows, int(round(total / per_chunk)), gamma=gamma)
    return np.sort(ending)[::-1]
