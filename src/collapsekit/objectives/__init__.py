"""Objectives: turn a model's :class:`~collapsekit.models.output.ModelOutput` into a loss.

Models return distributions; everything about the loss lives here, so β per level, free bits,
IWAE, InfoVAE-MMD, capacity and every schedule apply to every model. All values are in nats per
example; ``LossTerms.kl`` is never multiplied by β (docs/theory.md §1.0).

>>> objective = build_objective("elbo", beta=[1.0, 0.5], free_bits=0.25)      # doctest: +SKIP
>>> schedule = build_schedule("linear", warmup_steps=1000)                    # doctest: +SKIP
>>> schedule.validate(total_steps)                                            # doctest: +SKIP
>>> objective = bind_schedule(objective, schedule)                            # doctest: +SKIP
>>> terms = objective(model(x), **{schedule.controls: schedule.value(step)})  # doctest: +SKIP
>>> terms.loss.backward(); terms.as_floats()                                  # doctest: +SKIP

Modules: ``terms`` (LossTerms and the per-level KL), ``elbo`` (β-ELBO, free bits, capacity),
``iwae``, ``infovae``, ``schedules``, ``registry``.
"""

from collapsekit.objectives.elbo import BetaELBO, CapacityELBO
from collapsekit.objectives.infovae import KERNELS, InfoVAEMMD, mmd_unbiased
from collapsekit.objectives.iwae import IWAE, iwae_bound, log_importance_weights
from collapsekit.objectives.registry import (OBJECTIVES, SCHEDULES, bind_schedule, build_objective, build_schedule,
                                             objective_from_dict, schedule_from_dict)
from collapsekit.objectives.schedules import Capacity, Constant, Cyclical, LinearWarmup, Schedule, SigmoidWarmup
from collapsekit.objectives.terms import (LossTerms, Objective, kl_per_dimension, level_kl_per_dimension,
                                          reconstruction_per_sample)

__all__ = [
    "KERNELS", "OBJECTIVES", "SCHEDULES", "BetaELBO", "Capacity", "CapacityELBO", "Constant", "Cyclical", "IWAE",
    "InfoVAEMMD", "LinearWarmup", "LossTerms", "Objective", "Schedule", "SigmoidWarmup", "bind_schedule",
    "build_objective", "build_schedule", "iwae_bound", "kl_per_dimension", "level_kl_per_dimension",
    "log_importance_weights", "mmd_unbiased", "objective_from_dict", "reconstruction_per_sample",
    "schedule_from_dict",
]
