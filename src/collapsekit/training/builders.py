"""Building a run's parts from its configuration: the data (with the validation part), the model, the
objective with its schedule, and the optimiser. The trainer, the batched trainer and the readers of a run
use these, so that a configuration means the same thing everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from collapsekit.errors import DataError, ParameterError
from collapsekit.training.config import RunConfig


@dataclass
class TrainingData:
    """Tensors a model consumes: ``x`` (input; the condition for a CVAE) and optional ``y``."""

    x: torch.Tensor
    y: torch.Tensor | None = None
    image_side: int | None = None
    name: str = "data"
    #: The validation part (``data.val_fraction``), held out of ``x``/``y``; None without one.
    validation: TrainingData | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


# -- building blocks from a config ----------------------------------------------------------------
def load_training_data(config: RunConfig) -> TrainingData:
    """Load the data spec with its views, as float32 tensors (the model's dtype): the rows the model trains on,
    with the validation part (``data.val_fraction``, carved from the rows the views leave) in ``validation``."""
    from collapsekit.data import apply_views, load
    from collapsekit.models.registry import model_family

    cfg = config.data
    base = load(cfg.spec)
    dataset = apply_views(base, split=cfg.split, condition=cfg.condition, digit=cfg.digit, part=cfg.part,
                          test_fraction=cfg.test_fraction, seed=config.train.seed)
    held_out = None
    if cfg.val_fraction is not None:
        dataset, held_out = _validation_split(dataset, cfg.val_fraction, cfg.val_seed)
    conditional = model_family(config.model.kind).conditional
    if conditional and dataset.y is None:
        raise ParameterError("the CVAE needs (x, y) pairs: set data.split: quadrants or data.condition: label "
                             "(--split / --condition), or give data with a y array")
    if not conditional and dataset.y is not None:
        raise ParameterError(f"data.split and data.condition make (x, y) pairs for the CVAE; the "
                             f"{config.model.kind} models x alone")
    side = base.image_shape[0] if base.image_shape and base.image_shape[0] == base.image_shape[1] else None
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    validation = None if held_out is None else TrainingData(
        x=as_tensor(held_out.x), y=None if held_out.y is None else as_tensor(held_out.y), image_side=side,
        name=held_out.name)
    return TrainingData(x=as_tensor(dataset.x), y=None if dataset.y is None else as_tensor(dataset.y),
                        image_side=side, name=dataset.name, validation=validation)


def _validation_split(dataset: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(training rows, validation rows): a seeded partition of ``dataset``, each part in the source order."""
    from collapsekit.data import train_test_split

    try:
        train_part, held_out = train_test_split(dataset, test_fraction=fraction, seed=seed)
    except DataError:
        raise DataError(f"data.val_fraction {fraction:g} of {dataset.n} rows leaves an empty training or validation "
                        "part") from None
    return (train_part.subset(slice(None), name=dataset.name),
            held_out.subset(slice(None), name=f"{dataset.name}/validation"))


def build_model_from_config(config: RunConfig, data: TrainingData) -> nn.Module:
    """The model a config describes, sized for ``data``."""
    from collapsekit.models import build_model

    m = config.model
    encoder_std = m.encoder_std
    if encoder_std == "auto":
        encoder_std = "learnable" if m.arch == "linear" else "data"
    return build_model(m.kind, m.arch, x_dim=data.x.shape[1], y_dim=None if data.y is None else data.y.shape[1],
                       image_side=data.image_side, latent_dims=m.latent_dims, hidden=m.hidden, channels=m.channels,
                       activation=m.activation, mean_activation=_none(m.mean_activation),
                       out_activation=_none(m.out_activation),
                       likelihood=m.likelihood, eta_enc=m.eta_enc, eta_dec=m.eta_dec, learn_eta_dec=m.learn_eta_dec,
                       encoder_std=encoder_std, init_std=m.init_std, sigma1=m.sigma1, sigma2=m.sigma2)


def _none(name: str) -> str | None:
    return None if name == "none" else name


def build_objective_from_config(config: RunConfig) -> tuple[Any, Any]:
    """The objective and the schedule that drives it, checked as a pair before training."""
    import inspect

    from collapsekit.objectives import OBJECTIVES, bind_schedule, build_objective, build_schedule

    o = config.objective
    # The configuration's objective settings that the objective's constructor takes (a registered
    # objective gets its own by name, with no table to extend here).
    available = {"beta": o.beta, "free_bits": o.free_bits, "k": o.k, "alpha": o.alpha, "lambda_": o.lambda_}
    accepted = inspect.signature(OBJECTIVES[o.name]).parameters
    settings = {key: value for key, value in available.items() if key in accepted}
    schedule = build_schedule(config.schedule.name, **config.schedule.settings)
    return bind_schedule(build_objective(o.name, **settings), schedule), schedule


def build_optimizer(config: RunConfig, parameters: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser ``config.optim`` names (Adam or SGD), over ``parameters``."""
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(parameters, lr=o.lr, weight_decay=o.weight_decay)
