"""The points of a sweep: one value per grid key and a seed, and the configuration each trains."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collapsekit.errors import ParameterError
from collapsekit.experiments.sweep.grid import ConfigKey, Grid, resolve_key, seed_list
from collapsekit.experiments.values import format_value

if TYPE_CHECKING:
    from collapsekit.training import RunConfig


@dataclass(frozen=True)
class Point:
    """One run of a sweep: one value per grid key, and a seed."""

    settings: dict[str, Any] = field(hash=False)
    seed: int = 0

    @property
    def id(self) -> str:
        """Its directory name: ``beta=0.5,eta_dec=1,seed=0`` (deterministic, so a rerun finds it)."""
        parts = [f"{key}={format_value(value)}" for key, value in self.settings.items()]
        return ",".join([*parts, f"seed={self.seed}"])


def expand_grid(grid: Grid, seeds: int | Sequence[int]) -> list[Point]:
    """Every combination of the grid's values × every seed (the seed varies fastest).

    Raises
    ------
    ParameterError
        An unknown or repeated key, an axis without values, or two values that name the same point.
    """
    targets: list[tuple[str, ConfigKey]] = []
    for key, values in grid.items():
        target = resolve_key(key)
        for other, other_target in targets:
            if target.overlaps(other_target):
                raise ParameterError(f"grid keys {other!r} and {key!r} set the same configuration value")
        targets.append((key, target))
        tokens = [format_value(v) for v in values]
        if not tokens:
            raise ParameterError(f"grid key {key!r} has no values")
        if len(set(tokens)) != len(tokens):
            raise ParameterError(f"grid key {key!r} repeats a value: {', '.join(tokens)}")
    keys = list(grid)
    return [Point(dict(zip(keys, combination)), seed)
            for combination in itertools.product(*(list(grid[k]) for k in keys)) for seed in seed_list(seeds)]


def point_config(base: RunConfig, settings: Mapping[str, Any], seed: int) -> RunConfig:
    """The base configuration with one point's values and seed; validated (one-line ParameterError).

    Progress bars are turned off: points run in workers, and the sweep shows one bar of its own.
    """
    overrides: dict[str, Any] = {"train.seed": seed, "train.progress": False}
    levels: dict[int, Any] = {}
    current = base.model_dump(by_alias=True)
    for key, value in settings.items():
        target = resolve_key(key)
        if target.level is not None:
            levels[target.level] = value
        elif target.sub is not None:
            section, name = target.dotted.split(".")
            overrides.setdefault(target.dotted, dict(current[section][name] or {}))[target.sub] = value
        else:
            overrides[target.dotted] = [value] if target.as_list else value
    config = base.with_overrides(overrides)
    if levels:
        # A per-level β: expand the configured β to one per level first (a single β serves all levels).
        beta = config.objective.beta
        betas = list(beta) if isinstance(beta, list) else [beta]
        n_levels = len(config.model.latent_dims)
        betas = betas * n_levels if len(betas) == 1 else betas
        for level, value in sorted(levels.items()):
            if level >= len(betas):
                raise ParameterError(f"beta{level + 1}: the model has {len(betas)} latent level(s)")
            betas[level] = value
        config = config.with_overrides({"objective.beta": betas})
    return config
