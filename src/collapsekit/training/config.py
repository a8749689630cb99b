"""The typed, validated configuration of a training run (YAML file, CLI flags, or Python).

Every CLI flag of ``collapsekit train`` has a key here; the resolved configuration is saved in
the run directory as ``config.yaml`` so a run can be reproduced and resumed from it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collapsekit.errors import ParameterError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the examples come from: a data spec (see ``collapsekit.data.SPEC_HELP``) and views.

    The validation part is a data setting, like ``part``: together these keys decide which rows the model
    trains on, so that the data section alone rebuilds the training rows (for a resume, ``diagnose`` and
    ``evaluation.json``) and the validation rows.
    """

    spec: str = "digits"
    split: Literal["quadrants"] | None = None
    condition: Literal["label"] | None = None
    digit: int | None = Field(default=None, ge=0)
    part: Literal["train", "test"] | None = None
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    #: Share of the rows left by ``part``/``test_fraction`` held out for validation while training (None: none).
    val_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    #: Seed of the validation split, apart from ``train.seed``: runs of several seeds hold out the same rows.
    val_seed: int = Field(default=0, ge=0)


class ModelConfig(_Section):
    """Which model: kind, architecture family and the hyper-parameters of its distributions."""

    #: A model family of :data:`collapsekit.models.MODEL_FAMILIES` (registered ones too; see :func:`model_kinds`).
    kind: str = "vae"
    arch: Literal["linear", "mlp", "conv"] = "mlp"
    latent_dims: list[int] = Field(default_factory=lambda: [16])
    hidden: list[int] = Field(default_factory=lambda: [256])
    #: Conv channels (c₁, c₂) of arch "conv".
    channels: list[int] = Field(default_factory=lambda: [32, 16])
    activation: Literal["relu", "tanh"] = "relu"
    #: Squashes every latent mean (the paper's ReLU VAE: "relu"; its MHVAEs: "tanh").
    mean_activation: Literal["none", "relu", "tanh", "sigmoid"] = "none"
    #: Squashes the decoder's output mean (the paper's MHVAEs: "tanh"); "none" for a Bernoulli likelihood.
    out_activation: Literal["none", "relu", "tanh", "sigmoid"] = "none"
    likelihood: Literal["gaussian", "bernoulli"] = "gaussian"
    eta_enc: float = Field(default=1.0, gt=0.0)
    eta_dec: float = Field(default=1.0, gt=0.0)
    learn_eta_dec: bool = False
    # "auto": data-dependent (a head) for mlp/conv, learnable data-independent for linear (the theory's).
    encoder_std: Literal["auto", "learnable", "data"] | float = "auto"
    #: Starting value of every learnable encoder std.
    init_std: float = Field(default=1.0, gt=0.0)
    sigma1: Literal["learnable", "data"] | float = 0.5
    sigma2: Literal["learnable", "data"] | float = "learnable"

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, kind: str) -> str:
        return _one_of(kind, model_kinds())

    @field_validator("latent_dims", "hidden", "channels")
    @classmethod
    def _positive_sizes(cls, sizes: list[int]) -> list[int]:
        if any(size <= 0 for size in sizes):
            raise ValueError("sizes must be ≥ 1")
        return sizes

    @field_validator("encoder_std", "sigma1", "sigma2")
    @classmethod
    def _positive_std(cls, value: Any) -> Any:
        if isinstance(value, float) and value <= 0:
            raise ValueError("a fixed std must be > 0")
        return value

    @model_validator(mode="after")
    def _levels_match_kind(self) -> "ModelConfig":
        from collapsekit.models.registry import model_family

        levels, hierarchical = len(self.latent_dims), model_family(self.kind).hierarchical
        if hierarchical and levels < 2:
            raise ValueError(f"latent_dims: a hierarchical VAE needs ≥ 2 levels, got {self.latent_dims}")
        if not hierarchical and levels != 1:
            raise ValueError(f"latent_dims: a {self.kind} has one latent level, got {self.latent_dims}")
        if len(self.channels) != 2:
            raise ValueError(f"channels: two conv channel counts (c1, c2), got {self.channels}")
        return self


class ObjectiveConfig(_Section):
    """The training objective; ``beta`` is the true KL weight (one per level, or one for all)."""

    #: An objective of :data:`collapsekit.objectives.OBJECTIVES` (see :func:`objective_names`).
    name: str = "elbo"
    beta: float | list[float] = 1.0
    free_bits: float | None = Field(default=None, ge=0.0)
    k: int = Field(default=1, ge=1)
    alpha: float = 0.0
    lambda_: float = Field(default=1000.0, alias="lambda")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _registered_name(cls, name: str) -> str:
        return _one_of(name, objective_names())

    @field_validator("beta")
    @classmethod
    def _non_negative(cls, beta: float | list[float]) -> float | list[float]:
        values = beta if isinstance(beta, list) else [beta]
        if not values or any(b < 0 for b in values):
            raise ValueError("β must be ≥ 0")
        return beta


class ScheduleConfig(_Section):
    """A schedule of the factor that multiplies β (``name`` plus its settings)."""

    name: Literal["constant", "linear", "sigmoid", "cyclical", "capacity"] = "constant"
    settings: dict[str, Any] = Field(default_factory=dict)


class OptimConfig(_Section):
    """Optimiser: Adam or SGD with momentum, optional gradient-norm clipping and cosine decay."""

    name: Literal["adam", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    grad_clip: float | None = Field(default=None, gt=0.0)
    # "cosine": lr·½(1 + cos(π·step/total)) — decays to 0 so the last epochs settle at the optimum.
    lr_schedule: Literal["constant", "cosine"] = "constant"


class TrainConfig(_Section):
    """The loop: epochs, batches, seed, devices (Lightning Fabric), outputs."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)
    seed: int = Field(default=0, ge=0)
    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = Field(default=1, ge=1)
    strategy: str = "auto"
    #: Lightning Fabric's precision: "32-true" (float32), "64-true", "bf16-mixed", "16-mixed" (autocast
    #: with float32 weights), "bf16-true", "16-true", or NVIDIA Transformer Engine's.
    precision: Literal["32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "transformer-engine",
                       "transformer-engine-float16"] = "32-true"
    loggers: list[Literal["csv", "tensorboard"]] = Field(default_factory=list)
    progress: bool = True
    #: The CollapseMonitor: per-epoch active units, minibatch MI and collapse warnings with their causes.
    monitor: bool = True
    #: Warn (one CollapseWarning) the first time the monitor's forecast says the run ends with fewer active
    #: dimensions of the summary level than this (``--min-active K``; needs the monitor).
    min_active: int | None = Field(default=None, ge=1)
    #: Write a checkpoint every this many epochs (the final epoch always gets one).
    checkpoint_every: int = Field(default=1, ge=1)
    #: How many of the newest checkpoints stay on disk (a corrupt newest one falls back to the one before).
    keep_checkpoints: int = Field(default=2, ge=1)
    #: Stop when the validation loss has not improved for this many epochs (needs ``data.val_fraction``).
    early_stop: int | None = Field(default=None, ge=1)


class RunConfig(_Section):
    """Everything a run needs. ``RunConfig.load(path)`` reads YAML; sections default sensibly."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _early_stop_needs_validation(self) -> "RunConfig":
        if self.train.early_stop is not None and self.data.val_fraction is None:
            raise ValueError("train.early_stop watches the validation loss: set data.val_fraction (--val-fraction F) "
                             "too")
        return self

    @model_validator(mode="after")
    def _min_active_fits(self) -> "RunConfig":
        k = self.train.min_active
        if k is not None and not self.train.monitor:
            raise ValueError("train.min_active (--min-active) is a warning of the collapse monitor: it needs "
                             "train.monitor: true")
        if k is not None and k > self.model.latent_dims[-1]:
            raise ValueError(f"train.min_active (--min-active) is {k}, more than the {self.model.latent_dims[-1]} "
                             "latent dimensions of the summary level")
        return self

    @classmethod
    def parse(cls, values: dict[str, Any]) -> "RunConfig":
        """Validate a nested dict; errors become one-line ParameterErrors naming the field."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ParameterError(_one_line(exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Read a YAML file."""
        path = Path(path)
        if path.is_dir():
            raise ParameterError(f"{path} is a directory, not a configuration file (YAML)")
        if not path.is_file():
            from collapsekit.errors import DataFileNotFoundError

            raise DataFileNotFoundError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ParameterError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ParameterError(f"{path}: expected a mapping of sections at the top level")
        return cls.parse(values)

    def with_overrides(self, overrides: dict[str, Any]) -> "RunConfig":
        """A copy with dotted keys replaced, e.g. ``{"objective.beta": 2.0}``; validated."""
        values = self.model_dump(by_alias=True)
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in values or not key:
                import difflib

                keys = [f"{name}.{key}" for name in _valid_keys([]) for key in _valid_keys([name])]
                close = difflib.get_close_matches(dotted, keys, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else f" (sections: {', '.join(_valid_keys([]))})"
                raise ParameterError(f"unknown configuration key {dotted!r}{hint}")
            values[section][key] = value
        return self.parse(values)

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (what is saved in the run directory)."""
        return yaml.safe_dump(self.model_dump(by_alias=True, mode="json"), sort_keys=False)


def model_kinds() -> tuple[str, ...]:
    """The model families ``model.kind`` accepts: the registry's (:mod:`collapsekit.models.registry`), read when
    a configuration is validated, so that a registered family is accepted."""
    from collapsekit.models.registry import model_kinds as registered

    return registered()


def objective_names() -> tuple[str, ...]:
    """The objectives ``objective.name`` accepts: the registry's (:mod:`collapsekit.objectives.registry`), read
    when a configuration is validated, less those a schedule of the same name selects (``capacity``)."""
    from collapsekit.objectives.registry import OBJECTIVES, SCHEDULES

    return tuple(name for name in OBJECTIVES if name not in SCHEDULES)


def _one_of(value: str, names: tuple[str, ...]) -> str:
    if value not in names:
        raise ValueError(f"must be one of {', '.join(names)}")
    return value


def _valid_keys(path: list[str]) -> list[str]:
    """The names valid at ``path`` (``[]``: the sections; ``["model"]``: that section's keys)."""
    fields = RunConfig.model_fields
    if not path:
        return list(fields)
    section = fields.get(path[0])
    if section is None or not isinstance(section.annotation, type) or not issubclass(section.annotation, BaseModel):
        return []
    return [info.alias or name for name, info in section.annotation.model_fields.items()]


def _suggestion(loc: list[str]) -> str:
    """`` (did you mean model.latent_dims?)`` for an unknown key or section, else the valid names."""
    import difflib

    valid = _valid_keys(loc[:-1])
    prefix = "".join(f"{part}." for part in loc[:-1])
    close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {prefix}{close[0]}?)"
    where = f"the {loc[-2]} section's keys" if len(loc) > 1 else "the sections"
    return f" ({where}: {', '.join(valid)})" if valid else ""


def _one_line(exc: ValidationError) -> str:
    """Every problem of a configuration in one line, an unknown key with the nearest valid one."""
    problems: dict[str, list[str]] = {}
    for error in exc.errors():
        # the field's dotted name: a union's branch names (``float``, ``literal[...]``) and list indices are not part
        loc = [str(part) for part in error["loc"]]
        field_loc = loc[:2] if len(loc) >= 2 and loc[0] in RunConfig.model_fields else loc[:1]
        where = ".".join(field_loc)
        if error["type"] == "extra_forbidden":
            message = ("unknown key" if len(loc) > 1 else "unknown section") + _suggestion(loc)
        else:
            given = error.get("input")
            message = error["msg"].removeprefix("Value error, ") + ("" if isinstance(given, dict) else f", got {given!r}")
        messages = problems.setdefault(where, [])
        if message not in messages:
            messages.append(message)
    items = [f"{where}: {' or '.join(messages)}" if where else " or ".join(messages)
             for where, messages in problems.items()]
    if len(items) == 1:
        return f"config {items[0]}" if next(iter(problems)) else f"config: {items[0]}"
    return f"config: {len(items)} problems: " + "; ".join(items)
