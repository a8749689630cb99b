"""A sweep directory's description (``sweep.yaml``): written once, checked on every rerun, read back."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapsekit._io import atomic_path
from collapsekit.errors import CollapsekitError, ParameterError
from collapsekit.experiments.sweep.grid import Grid
from collapsekit.experiments.sweep.layout import LOCK_FILE, SWEEP_FILE, SWEEP_FORMAT
from collapsekit.experiments.values import format_value

if TYPE_CHECKING:
    from collapsekit.training import RunConfig


def sweep_spec(base: RunConfig, grid: Grid, seeds: Sequence[int]) -> dict[str, Any]:
    """What ``sweep.yaml`` records: the base configuration, the grid and the seeds."""
    return {"format": SWEEP_FORMAT, "config": base.model_dump(by_alias=True, mode="json"),
            "grid": {key: list(values) for key, values in grid.items()}, "seeds": list(seeds)}


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """What must match for a rerun to be the same sweep (the base seed and output-only settings do not count)."""
    from collapsekit.training import RunConfig

    # Parsed, so that keys added to the configuration since the sweep began compare at their defaults.
    config = RunConfig.parse(spec["config"]).model_dump(by_alias=True, mode="json")
    for key in ("seed", "progress", "checkpoint_every", "keep_checkpoints"):
        config.get("train", {}).pop(key, None)
    return {"config": config, "grid": {k: [format_value(v) for v in vs] for k, vs in spec["grid"].items()},
            "seeds": list(spec["seeds"])}


def _first_difference(mine: Any, theirs: Any, where: str = "") -> str:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in dict.fromkeys([*mine, *theirs]):
            if mine.get(key) != theirs.get(key):
                return _first_difference(mine.get(key), theirs.get(key), f"{where}.{key}" if where else str(key))
    return f"{where}: {theirs!r} there, {mine!r} now"


def claim_directory(out: Path, spec: dict[str, Any]) -> None:
    """Write ``sweep.yaml`` into a new sweep directory, or check that it describes this same sweep."""
    import yaml  # type: ignore[import-untyped]

    path = out / SWEEP_FILE
    if path.is_file():
        stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        try:
            theirs = _comparable(stored)
        except (KeyError, TypeError, AttributeError, CollapsekitError):
            raise ParameterError(f"{path}: not a sweep description; choose another --out") from None
        mine = _comparable(spec)
        if mine != theirs:
            raise ParameterError(f"{out} holds a different sweep ({_first_difference(mine, theirs)}); rerun it "
                                 "with the same configuration, grid and seeds, or choose another --out "
                                 "(nothing was changed)")
        return
    refuse_foreign(out)
    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")


def refuse_foreign(out: Path) -> None:
    """Refuse a directory that holds files but no sweep: a sweep never writes among someone's files."""
    if out.is_dir() and not (out / SWEEP_FILE).is_file() and any(e.name != LOCK_FILE for e in out.iterdir()):
        raise ParameterError(f"{out} is not empty and holds no {SWEEP_FILE}; choose another --out "
                             "(nothing was changed)")


def load_sweep(out_dir: str | os.PathLike[str]) -> tuple[RunConfig, dict[str, list[Any]], list[int]]:
    """The base configuration, grid and seeds of the sweep in ``out_dir`` (from its ``sweep.yaml``)."""
    import yaml  # type: ignore[import-untyped]

    from collapsekit.training import RunConfig

    path = Path(out_dir) / SWEEP_FILE
    if not path.is_file():
        raise ParameterError(f"{out_dir} is not a sweep directory (no {SWEEP_FILE})")
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        return RunConfig.parse(spec["config"]), {k: list(v) for k, v in spec["grid"].items()}, list(spec["seeds"])
    except (KeyError, TypeError, AttributeError):
        raise ParameterError(f"{path}: not a sweep description") from None
