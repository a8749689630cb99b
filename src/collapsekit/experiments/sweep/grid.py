"""A sweep's grid: keys that name configuration values, ``--grid KEY=V1,V2`` options, and seeds."""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collapsekit.errors import ParameterError
from collapsekit.experiments.values import parse_value

#: A grid: configuration key → values, in the order the points should vary.
Grid = Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class ConfigKey:
    """Where a grid key lands in a :class:`~collapsekit.training.RunConfig`.

    Attributes
    ----------
    dotted : str
        ``section.field`` (field by its YAML name, e.g. ``objective.lambda``).
    sub : str or None
        A key inside a mapping field: ``schedule.settings.warmup_steps`` → ``"warmup_steps"``.
    level : int or None
        One level's entry of a per-level list: ``beta2`` → 1 (β of the second level).
    as_list : bool
        The value is wrapped in a list: ``latent_dim`` → ``model.latent_dims: [value]``.
    """

    dotted: str
    sub: str | None = None
    level: int | None = None
    as_list: bool = False

    def overlaps(self, other: ConfigKey) -> bool:
        """Whether two keys would set the same value (``beta`` and ``beta2`` do; ``beta1`` and ``beta2`` not)."""
        if self.dotted != other.dotted:
            return False
        distinct = lambda a, b: a is not None and b is not None and a != b  # noqa: E731
        return not (distinct(self.level, other.level) or distinct(self.sub, other.sub))


# Short names beyond the unique field names; they mirror the flags of `collapsekit train`.
_ALIASES = {"model": ConfigKey("model.kind"), "objective": ConfigKey("objective.name"),
            "schedule": ConfigKey("schedule.name"), "optimizer": ConfigKey("optim.name"),
            "latent_dim": ConfigKey("model.latent_dims", as_list=True)}
_LEVEL_BETA = re.compile(r"beta([1-9][0-9]*)")


@functools.cache
def _config_fields() -> dict[str, dict[str, Any]]:
    """{section: {field's YAML name: annotation}} read from RunConfig itself, so new fields need no table."""
    from collapsekit.training.config import RunConfig

    fields: dict[str, dict[str, Any]] = {}
    for section, info in RunConfig.model_fields.items():
        model: Any = info.annotation              # every section is a pydantic model of its own
        fields[section] = {(f.alias or name): f.annotation for name, f in model.model_fields.items()}
    return fields


@functools.cache
def _short_names() -> dict[str, str]:
    """Field names that occur in one section only (``beta``, ``eta_dec``, ``lr``, ...) → dotted key."""
    owners: dict[str, list[str]] = {}
    for section, names in _config_fields().items():
        for name in names:
            owners.setdefault(name, []).append(f"{section}.{name}")
    return {name: dotted[0] for name, dotted in owners.items() if len(dotted) == 1}


def resolve_key(key: str) -> ConfigKey:
    """The configuration value a grid key sets.

    Accepted: a dotted key (``objective.beta``, ``schedule.settings.warmup_steps``); a field name
    that is unique across sections (``beta``, ``eta_dec``, ``lr``, ``epochs``; ``-`` may stand for
    ``_``); ``model``, ``objective``, ``schedule``, ``optimizer`` (the kind/name, as the train flags);
    ``latent_dim`` (one level's size); ``beta1``, ``beta2``, ... (one level's β of a hierarchy).
    """
    text = key.strip()
    fields = _config_fields()
    if "." in text:
        section, _, rest = text.partition(".")
        name, _, sub = rest.partition(".")
        if section not in fields or name not in fields[section]:
            raise ParameterError(f"unknown grid key {key!r}: no configuration key {section}.{name}")
        if sub and typing.get_origin(fields[section][name]) is not dict:
            raise ParameterError(f"grid key {key!r}: {section}.{name} is not a mapping")
        target = ConfigKey(f"{section}.{name}", sub=sub or None)
    else:
        short = text.replace("-", "_")
        level = _LEVEL_BETA.fullmatch(short)
        if short in _ALIASES:
            target = _ALIASES[short]
        elif level:
            target = ConfigKey("objective.beta", level=int(level.group(1)) - 1)
        elif short in _short_names():
            target = ConfigKey(_short_names()[short])
        else:
            where = [f"{s}.{short}" for s, names in fields.items() if short in names]
            hint = f"say which: {', '.join(where)}" if where else "use a configuration key such as objective.beta"
            raise ParameterError(f"unknown grid key {key!r}: {hint} (short names: beta, eta_dec, lr, latent_dim, ...)")
    if target.dotted == "train.seed":
        raise ParameterError(f"grid key {key!r}: the seed is an axis of its own; use --seeds")
    return target


def integer_key(key: str) -> bool:
    """Whether a grid key sets an integer (``latent_dim``, ``epochs``, ``k``): its values are counts, not
    points on a continuum. A key inside a mapping (``schedule.settings.warmup_steps``) has no declared type."""
    target = resolve_key(key)
    if target.sub is not None:
        return False
    section, name = target.dotted.split(".")
    annotation = _config_fields()[section][name]
    if target.as_list and typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    return annotation is int


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """``"beta=0.1,0.5,1"`` → ``("beta", [0.1, 0.5, 1])``."""
    key, eq, values = text.partition("=")
    if not eq or not key.strip():
        raise ParameterError(f"--grid {text!r}: expected KEY=V1,V2,... (e.g. beta=0.1,0.5,1)")
    parsed = [parse_value(v) for v in values.split(",") if v.strip()]
    if not parsed:
        raise ParameterError(f"--grid {text!r}: no values after '='")
    return key.strip(), parsed


def parse_grid(options: Sequence[str]) -> dict[str, list[Any]]:
    """Repeated ``--grid KEY=V1,V2`` options → a grid (keys in the order given)."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, values = parse_grid_option(option)
        if key in grid:
            raise ParameterError(f"--grid {key} is given twice; put all its values in one --grid")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> int | list[int]:
    """``"3"`` → 3 seeds (0, 1, 2); ``"0,5,7"`` (or ``"7,"`` for one) → those seeds."""
    try:
        if "," not in text:
            return int(text)
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ParameterError(f"--seeds must be a count (3) or a comma-separated list of seeds (0,5,7), "
                             f"got {text!r}") from None


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """Seeds as a list: a count ``n`` gives ``0..n-1``."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ParameterError(f"--seeds must be ≥ 1, got {seeds}")
        return list(range(seeds))
    values = [int(s) for s in seeds]
    if not values or any(s < 0 for s in values) or len(set(values)) != len(values):
        raise ParameterError(f"--seeds must be distinct seeds ≥ 0, got {values}")
    return values
