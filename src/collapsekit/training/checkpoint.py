"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically, with checksums.

A checkpoint is a directory ``checkpoints/epoch-NNNNNN/`` holding ``model.safetensors``,
``optimizer.safetensors`` (every tensor of the optimiser state, flattened), ``state.json`` (epoch,
step, the optimiser's non-tensor state, anything else the trainer records) and ``checksums.json``
(the SHA-256 of each of those three files' bytes, computed from the bytes as they are written). It is
written under a temporary name and renamed into place; ``checkpoints/latest.json`` then points at it
(also written atomically). A run killed at any moment therefore leaves the previous complete
checkpoint usable, and the last ``keep`` checkpoints stay on disk. Nothing is loaded with pickle.

Loading verifies every checksum before anything is parsed, so a truncated or garbled file, an empty
``state.json`` or tensor bytes overwritten under an intact header raise :class:`CorruptCheckpointError`
(one line, naming the checkpoint) instead of surfacing later as a parse error or a NaN loss.
Checkpoints written before checksums existed (no ``checksums.json``) still load: every file is then
parsed with the same checks, and their weights must be finite.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from collapsekit._io import atomic_path
from collapsekit.errors import CollapsekitError

LATEST = "latest.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
CHECKSUM_FILE = "checksums.json"
#: What ``checksums.json`` covers, in the order it is written.
CHECKSUMMED = (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)
PREFIX = "epoch-"


class CorruptCheckpointError(CollapsekitError, ValueError):
    """A checkpoint that cannot be trusted: a file missing, truncated, garbled or not matching its
    checksum, or weights that do not fit the model. ``path`` is the checkpoint, ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"checkpoint {path} is corrupt: {reason}")


class CheckpointWarning(UserWarning):
    """A corrupt checkpoint was passed over for an earlier intact one."""


@dataclass
class Checkpoint:
    """A loaded, verified checkpoint."""

    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])

    def restore_model(self, model: nn.Module) -> None:
        """Load the weights into ``model`` (in place, onto its devices and dtypes); weights that do not
        fit it (missing or unexpected names, other shapes) raise :class:`CorruptCheckpointError`."""
        expected = model.state_dict()
        problems = [f"missing {name}" for name in expected if name not in self.model]
        problems += [f"unexpected {name}" for name in self.model if name not in expected]
        problems += [f"{name} has shape {tuple(self.model[name].shape)}, the model {tuple(value.shape)}"
                     for name, value in expected.items()
                     if name in self.model and self.model[name].shape != value.shape]
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise CorruptCheckpointError(self.path, "its weights do not fit the model of the run's configuration: "
                                         + "; ".join(problems[:3]) + more)
        try:
            model.load_state_dict(self.model)
        except RuntimeError as exc:
            raise CorruptCheckpointError(self.path, f"its weights do not fit the model ({_first_line(exc)})") from None

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Load the optimiser state; call it once the parameters are where training runs (after
        ``fabric.setup``): torch casts the state to each parameter's device and dtype as it loads."""
        try:
            optimizer.load_state_dict(self.optimizer)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CorruptCheckpointError(self.path, f"its optimiser state does not fit the optimiser "
                                                    f"({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _flatten(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference, collecting the tensors."""
    if isinstance(tree, torch.Tensor):
        key = prefix or "root"
        tensors[key] = tree.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(tree, dict):
        return {str(k): _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(tree)]
    return tree


def _unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unflatten(v, tensors) for v in tree]
    return tree


def _optimizer_state_for_json(state_dict: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    # torch's optimiser state is keyed by integer parameter ids; JSON keys are strings, so remember them.
    flat = _flatten(state_dict, "", tensors)
    flat["state_keys"] = [int(k) for k in state_dict.get("state", {})]
    return flat


def _optimizer_state_from_json(tree: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    keys = tree.pop("state_keys", [])
    restored = _unflatten(tree, tensors)
    restored["state"] = {key: restored["state"][str(key)] for key in keys}
    return restored


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch in a checkpoint directory's name (``epoch-000012`` → 12), or None."""
    name = Path(path).name
    digits = name[len(PREFIX):]
    return int(digits) if name.startswith(PREFIX) and digits.isdigit() else None


def sha256(data: bytes) -> str:
    """The hex SHA-256 of ``data`` (what ``checksums.json`` records per file)."""
    return hashlib.sha256(data).hexdigest()


def checkpoint_files(*, epoch: int, model: dict[str, torch.Tensor], optimizer: dict[str, Any],
                     state: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of every file of a checkpoint, ``checksums.json`` last (hashed from these same bytes)."""
    files: dict[str, bytes] = {MODEL_FILE: save_tensors({k: v.detach().cpu().contiguous() for k, v in model.items()})}
    optimizer_tensors: dict[str, torch.Tensor] = {}
    optimizer_tree = _optimizer_state_for_json(optimizer, optimizer_tensors)
    files[OPTIMIZER_FILE] = save_tensors(optimizer_tensors)
    files[STATE_FILE] = json.dumps({"epoch": epoch, "optimizer": optimizer_tree, **state}, indent=1,
                                   allow_nan=False).encode("utf-8")
    sums = {name: sha256(files[name]) for name in CHECKSUMMED}
    files[CHECKSUM_FILE] = json.dumps({"algorithm": "sha256", "files": sums}, indent=1).encode("utf-8")
    return files


def save_checkpoint(directory: Path, *, epoch: int, model: dict[str, torch.Tensor],
                    optimizer: dict[str, Any], state: dict[str, Any], keep: int = 2) -> Path:
    """Write a checkpoint for ``epoch`` atomically and point ``latest.json`` at it.

    ``model`` and ``optimizer`` are state dicts; the ``keep`` most recent checkpoints are kept (older
    ones are deleted once the new one is in place).
    """
    if keep < 1:
        raise ValueError(f"keep must be ≥ 1, got {keep}")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{epoch:06d}"
    staging = directory / f".staging-{PREFIX}{epoch:06d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name, data in checkpoint_files(epoch=epoch, model=model, optimizer=optimizer, state=state).items():
        (staging / name).write_bytes(data)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    with atomic_path(directory / LATEST) as temporary:
        temporary.write_text(json.dumps({"epoch": epoch, "path": final.name}))
    for old in _epoch_directories(directory)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _epoch_directories(directory: Path) -> list[Path]:
    """Every ``epoch-NNNNNN`` directory, newest first."""
    if not directory.is_dir():
        return []
    found = [(epoch, path) for path in directory.iterdir()
             if path.is_dir() and (epoch := checkpoint_epoch(path)) is not None]
    return [path for _, path in sorted(found, reverse=True)]


def _pointer_target(directory: Path) -> Path | None:
    """The directory ``latest.json`` names, or None when it is absent, unreadable or names nothing."""
    try:
        target = json.loads((directory / LATEST).read_text(encoding="utf-8"))["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(target, str) or checkpoint_epoch(Path(target)) is None or Path(target).name != target:
        return None
    return directory / target


def checkpoint_candidates(directory: Path) -> list[Path]:
    """The checkpoints to resume from, best first: the one ``latest.json`` points at, then every
    other ``epoch-*`` directory, newest first. Without a readable pointer, the newest directory leads
    (a run killed between renaming its first checkpoint into place and writing the pointer)."""
    directories = _epoch_directories(directory)
    target = _pointer_target(directory)
    if target is None or not target.is_dir():
        return directories
    return [target] + [path for path in directories if path != target]


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint directory (the one ``latest.json`` points at), or None when there is none.

    It is not verified here: :func:`load_checkpoint` does that.
    """
    candidates = checkpoint_candidates(directory)
    return candidates[0] if candidates else None


def _read(path: Path, name: str) -> bytes:
    try:
        return (path / name).read_bytes()
    except FileNotFoundError:
        raise CorruptCheckpointError(path, f"{name} is missing") from None
    except OSError as exc:
        raise CorruptCheckpointError(path, f"{name} cannot be read ({exc.strerror or exc})") from None


def verify_checkpoint(path: Path) -> dict[str, bytes] | None:
    """Check every file of a checkpoint against ``checksums.json``; return the verified bytes, or
    None for a checkpoint written before checksums existed. Raises :class:`CorruptCheckpointError`."""
    path = Path(path)
    if not path.is_dir():
        raise CorruptCheckpointError(path, "it is not a directory")
    if not (path / CHECKSUM_FILE).exists():
        return None
    try:
        recorded = json.loads(_read(path, CHECKSUM_FILE))["files"]
        if not isinstance(recorded, dict) or set(recorded) != set(CHECKSUMMED):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise CorruptCheckpointError(path, f"{CHECKSUM_FILE} is not a valid checksum list") from None
    files = {}
    for name in CHECKSUMMED:
        data = _read(path, name)
        if sha256(data) != recorded[name]:
            raise CorruptCheckpointError(path, f"{name} does not match its checksum "
                                               f"({len(data):,} bytes; truncated, garbled or overwritten)")
        files[name] = data
    return files


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and verify a checkpoint directory written by :func:`save_checkpoint`.

    Raises
    ------
    CorruptCheckpointError
        A file is missing, does not match its checksum, or cannot be parsed; the weights are not finite.
    """
    path = Path(path)
    files = verify_checkpoint(path)
    if files is None:                               # written before checksums: parse what is there
        files = {name: _read(path, name) for name in CHECKSUMMED}
    try:
        state = json.loads(files[STATE_FILE].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        empty = "empty" if not files[STATE_FILE].strip() else "not valid JSON"
        raise CorruptCheckpointError(path, f"{STATE_FILE} is {empty}") from None
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int) \
            or not isinstance(state.get("optimizer"), dict):
        raise CorruptCheckpointError(path, f"{STATE_FILE} lacks the epoch or the optimiser state")
    tensors = {}
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        try:
            tensors[name] = load_tensors(files[name])
        except SafetensorError as exc:
            raise CorruptCheckpointError(path, f"{name} cannot be read ({_first_line(exc)})") from None
    try:
        optimizer = _optimizer_state_from_json(state.pop("optimizer"), tensors[OPTIMIZER_FILE])
    except (KeyError, TypeError, AttributeError):
        raise CorruptCheckpointError(path, f"{STATE_FILE} and {OPTIMIZER_FILE} do not match") from None
    model = tensors[MODEL_FILE]
    for name, value in model.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CorruptCheckpointError(path, f"{MODEL_FILE} holds non-finite values in {name}")
    return Checkpoint(path=path, model=model, optimizer=optimizer, state=state)


def passed_over_message(passed: list[CorruptCheckpointError], checkpoint: Checkpoint, doing: str) -> str:
    """One line for a fallback: the corrupt newest checkpoint (and how many more were passed over), what is
    done instead (``doing``: "resuming from", "diagnosing") and the intact one used, with its epoch."""
    others = f" (and {len(passed) - 1} more corrupt checkpoint(s))" if len(passed) > 1 else ""
    return (f"checkpoint {passed[0].path} is corrupt: {passed[0].reason}{others}; {doing} the previous intact one, "
            f"{checkpoint.path} (epoch {checkpoint.epoch})")


def load_latest_checkpoint(directory: Path) -> tuple[Checkpoint | None, list[CorruptCheckpointError]]:
    """The newest intact checkpoint of ``directory`` and the corrupt ones passed over to reach it.

    Returns ``(None, [])`` when there is no checkpoint at all. Raises the newest checkpoint's
    :class:`CorruptCheckpointError` when none is intact.
    """
    passed: list[CorruptCheckpointError] = []
    for path in checkpoint_candidates(directory):
        try:
            return load_checkpoint(path), passed
        except CorruptCheckpointError as exc:
            passed.append(exc)
    if passed:
        first = passed[0]
        others = f"; no earlier checkpoint is intact either ({len(passed) - 1} tried)" if len(passed) > 1 else \
            "; there is no earlier checkpoint"
        raise CorruptCheckpointError(first.path, first.reason + others)
    return None, []
