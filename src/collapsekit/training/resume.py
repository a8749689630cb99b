"""Which configuration a run directory trains with: a new run's, or the saved one of a run it resumes.

``collapsekit train --out RUN --resume`` alone continues RUN with the configuration saved in its
``config.yaml``. Settings given beside ``--resume`` (flags, or keys of a ``--config`` file) must
match the saved ones, except ``train.epochs``, which may grow, and the output-only keys of
:data:`OUTPUT_ONLY`, which the resumed run takes as given; a mismatch names every differing key.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from collapsekit.errors import ParameterError
from collapsekit.training.config import RunConfig

#: Keys that change what a run writes or shows, not what it computes: a resumed run may change them.
OUTPUT_ONLY = ("train.progress", "train.loggers", "train.checkpoint_every", "train.keep_checkpoints")
#: What may grow when a run is resumed (it trains further).
GROWABLE = ("train.epochs",)


def flat(config: RunConfig) -> dict[str, Any]:
    """The configuration as dotted keys (``objective.beta``) and plain values."""
    return {f"{section}.{key}": value for section, values in config.model_dump(by_alias=True, mode="json").items()
            for key, value in values.items()}


def config_differences(saved: RunConfig, given: RunConfig, *, keys: Iterable[str] | None = None,
                       ignore: Iterable[str] = ()) -> list[str]:
    """``key (X saved, Y given)`` for every dotted key (all, or ``keys``) whose values differ."""
    mine, theirs, skip = flat(given), flat(saved), set(ignore)
    chosen = list(mine) if keys is None else [key for key in mine if key in set(keys)]
    return [f"{key} ({theirs.get(key)!r} saved, {mine[key]!r} given)" for key in chosen
            if key not in skip and mine[key] != theirs.get(key)]


def _file_keys(path: str | Path) -> list[str]:
    """The dotted keys a YAML configuration file sets (it was validated by RunConfig.load already)."""
    import yaml  # type: ignore[import-untyped]

    values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return [f"{section}.{key}" for section, keys in values.items() if isinstance(keys, dict) for key in keys]


def resolve_config(run_dir: str | Path, *, config: str | Path | None = None,
                   overrides: Mapping[str, Any] | None = None, resume: bool = False) -> RunConfig:
    """The configuration ``collapsekit train`` runs with.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (``--out``).
    config : str or Path, optional
        A YAML configuration file (``--config``).
    overrides : mapping, optional
        Dotted keys given as flags, e.g. ``{"objective.beta": 2.0}``.
    resume : bool
        Continue the run in ``run_dir``: its saved configuration, with ``train.epochs`` and the
        :data:`OUTPUT_ONLY` keys taken from what is given; every other given key must match.

    Raises
    ------
    ParameterError
        ``resume`` where ``run_dir`` holds no run; given settings that differ from the saved ones
        (all of them named); ``train.epochs`` below the saved count.
    """
    from collapsekit.training.layout import CONFIG_FILE

    overrides = dict(overrides or {})
    given = (RunConfig.load(config) if config is not None else RunConfig()).with_overrides(overrides)
    if not resume:
        return given
    run_dir = Path(run_dir)
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        where = "does not exist" if not run_dir.exists() else f"holds no run ({CONFIG_FILE} is missing)"
        raise ParameterError(f"--resume: {run_dir} {where}; drop --resume to start a new run there")
    saved = RunConfig.load(saved_path)
    keys = list(dict.fromkeys([*(_file_keys(config) if config is not None else []), *overrides]))
    differences = config_differences(saved, given, keys=keys, ignore=(*OUTPUT_ONLY, *GROWABLE))
    if differences:
        raise ParameterError(f"--resume: {run_dir} was trained with other settings: {'; '.join(differences)}. "
                             "`--resume` alone continues it as saved (only --epochs may grow); "
                             "or train into another --out")
    if "train.epochs" in keys and given.train.epochs < saved.train.epochs:
        raise ParameterError(f"--resume: {run_dir} trains for {saved.train.epochs} epochs; --epochs may grow "
                             f"(to train further), not shrink to {given.train.epochs}")
    values = flat(given)
    return saved.with_overrides({key: values[key] for key in keys if key in (*OUTPUT_ONLY, *GROWABLE)})


def resume_hint(run_dir: str | Path) -> str:
    """What to tell a user whose training was interrupted: the command that continues it, or that
    nothing was written yet."""
    from collapsekit.training.layout import CONFIG_FILE

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return f"no epoch was trained; nothing to resume in {run_dir}"
    return f"continue with: collapsekit train --out {shlex.quote(str(run_dir))} --resume"
