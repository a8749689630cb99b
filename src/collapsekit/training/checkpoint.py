"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a directory ``checkpoints/epoch-NNNNNN/`` holding ``model.safetensors``,
``optimizer.safetensors`` (every tensor of the optimiser state, flattened) and ``state.json`` (epoch, step, the optimiser's non-tensor state,
anything else the trainer records). It is written under a temporary name and renamed into place;
``checkpoints/latest.json`` then points at it (also written atomically). A run killed at any
moment therefore leaves the previous complete checkpoint usable. Nothing is loaded with pickle.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from collapsekit._io import atomic_path

LATEST = "latest.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: dict[str, Any]


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


def save_checkpoint(directory: Path, *, epoch: int, model: dict[str, torch.Tensor],
                    optimizer: dict[str, Any], state: dict[str, Any], keep: int = 1) -> Path:
    """Write a checkpoint for ``epoch`` atomically and point ``latest.json`` at it.

    ``model`` and ``optimizer`` are state dicts; ``keep`` most recent checkpoints are kept.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"epoch-{epoch:06d}"
    staging = directory / f".staging-epoch-{epoch:06d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.items()}, staging / "model.safetensors")
    optimizer_tensors: dict[str, torch.Tensor] = {}
    optimizer_tree = _optimizer_state_for_json(optimizer, optimizer_tensors)
    save_file(optimizer_tensors, staging / "optimizer.safetensors")
    (staging / "state.json").write_text(json.dumps({"epoch": epoch, "optimizer": optimizer_tree, **state},
                                                   indent=1, allow_nan=False))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    with atomic_path(directory / LATEST) as temporary:
        temporary.write_text(json.dumps({"epoch": epoch, "path": final.name}))
    for old in sorted(directory.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    """The directory ``latest.json`` points at, or None when there is no complete checkpoint."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    target = directory / json.loads(pointer.read_text())["path"]
    return target if (target / "state.json").is_file() else None


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`."""
    state = json.loads((path / "state.json").read_text())
    optimizer = _optimizer_state_from_json(state.pop("optimizer"), load_file(path / "optimizer.safetensors"))
    return Checkpoint(path=path, model=load_file(path / "model.safetensors"), optimizer=optimizer, state=state)
