"""Held-out evaluation while training: the validation loss and headline count every epoch, early stopping.

With ``data.val_fraction`` the run holds out a seeded part of its training rows (``data.val_seed``) and, after
every epoch, records on it (in ``metrics.jsonl``, nats per example):

* ``val_loss``, ``val_reconstruction``, ``val_kl``: the objective at the epoch's last KL weight, on the final
  weights of the epoch, with the same seeded noise every epoch (so epochs compare with each other);
* ``val_n_active`` and ``val_kl_per_dim``: the headline count per level, :mod:`collapsekit.activity`'s rule
  measured by :func:`collapsekit.diagnostics.headline.measure_activity` (as ``evaluation.json`` is).

With ``train.early_stop`` (a patience P) the run stops after the first epoch that ends P epochs after the best
validation loss; that epoch's record gets ``stopped`` (why, when, the best epoch). The final weights are the
stopped epoch's (its checkpoint is written); the best epoch's weights are kept in ``RUN/best/``. Everything
here is derived from the metrics history, so a resumed run stops where an uninterrupted one does, and a
resumed run that had stopped is finished.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from collapsekit.diagnostics.headline import measure_activity

#: Where the best validation epoch's checkpoint is kept (``RUN/best/epoch-NNNNNN``).
BEST_DIR = "best"
#: The reason recorded by a run that early stopping ended.
EARLY_STOP = "early stop"
#: Examples per forward pass of the validation loss.
BATCH_SIZE = 1024


@torch.no_grad()
def validation_record(model: nn.Module, raw_model: nn.Module, objective: Any, controls: dict[str, float],
                      x: torch.Tensor, y: torch.Tensor | None, *, seed: int) -> dict[str, Any]:
    """The epoch's validation entries of ``metrics.jsonl`` (keys ``val_*``), nats per example.

    ``model`` runs the loss (Fabric's wrapper: it casts inputs to the run's precision); ``raw_model`` is measured
    for the headline count. The global random state is restored; the training flags of the modules too.
    """
    flags = [(m, m.training) for m in raw_model.modules()]
    devices = [x.device] if x.device.type == "cuda" else []
    totals: dict[str, Any] = {}
    n = int(x.shape[0])
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model.eval()
            for start in range(0, n, BATCH_SIZE):
                stop = min(start + BATCH_SIZE, n)
                output = model(x[start:stop], None if y is None else y[start:stop], n_samples=1)
                terms = objective(output, **controls)
                weight = float(stop - start)
                for key in ("loss", "reconstruction", "kl"):
                    value = getattr(terms, key).detach().float() * weight
                    totals[key] = totals.get(key, 0) + value
    finally:
        for module, flag in flags:
            module.training = flag
    levels = measure_activity(raw_model, x, y)
    return {"val_loss": float(totals["loss"] / n), "val_reconstruction": float(totals["reconstruction"] / n),
            "val_kl": float(totals["kl"].sum() / n), "val_examples": n,
            "val_n_active": [level.n_active for level in levels],
            "val_kl_per_dim": [list(level.kl_per_dim) for level in levels]}


def best_epoch(history: list[dict[str, Any]]) -> tuple[int, float] | None:
    """(epoch, validation loss) of the lowest finite validation loss so far (the first, on ties), or None."""
    best: tuple[int, float] | None = None
    for record in history:
        loss = record.get("val_loss")
        if isinstance(loss, float) and math.isfinite(loss) and (best is None or loss < best[1]):
            best = (int(record["epoch"]), loss)
    return best


def early_stop(history: list[dict[str, Any]], patience: int) -> dict[str, Any] | None:
    """The ``stopped`` entry when the last epoch of ``history`` ends the run, else None: the validation loss has
    not improved for ``patience`` epochs (or was never finite for that long)."""
    if not history:
        return None
    epoch = int(history[-1]["epoch"])
    best = best_epoch(history)
    since = epoch - (best[0] if best is not None else int(history[0]["epoch"]) - 1)
    if since < patience:
        return None
    what = (f"the validation loss has not improved for {since} epochs since epoch {best[0]} ({best[1]:.6g} nats)"
            if best is not None else f"the validation loss has not been finite for {since} epochs")
    return {"reason": EARLY_STOP, "epoch": epoch, "patience": int(patience), "message": what,
            "best_epoch": None if best is None else best[0], "best_val_loss": None if best is None else best[1],
            "final_weights_epoch": epoch}


def training_summary(config: Any, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """How the run ended, for ``evaluation.json``: epochs trained, why it stopped, which weights are final and
    where the best validation epoch's weights are."""
    last = metrics[-1] if metrics else {}
    epoch = int(last.get("epoch", 0))
    stopped = last.get("stopped")
    best = best_epoch(metrics)
    summary: dict[str, Any] = {
        "epochs_trained": epoch, "epochs": int(config.train.epochs), "final_weights_epoch": epoch,
        "stopped_early": stopped is not None,
        "reason": stopped["message"] if stopped else f"trained the {epoch} epochs asked for"}
    if config.data.val_fraction is not None:
        summary["best_epoch"] = None if best is None else best[0]
        summary["best_val_loss"] = None if best is None else best[1]
        summary["best_checkpoint"] = None if best is None else f"{BEST_DIR}/epoch-{best[0]:06d}"
    return summary
