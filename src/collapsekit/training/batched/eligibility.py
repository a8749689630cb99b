"""Which runs can be trained as one batched program, and how (the modes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from collapsekit.errors import ParameterError
from collapsekit.training.config import RunConfig

#: Architectures whose runs are small enough to gain from batching and whose forward pass is reproduced here.
BATCHABLE_ARCHS: tuple[str, ...] = ("linear", "mlp")

#: How a batched program trains (:mod:`collapsekit.training.batched`): ``exact`` (bit for bit separate runs) or ``fast``.
BATCH_MODES: tuple[str, ...] = ("exact", "fast")


def check_batch_mode(mode: object) -> str:
    """``mode`` when it is one of :data:`BATCH_MODES`; otherwise a one-line :class:`ParameterError`."""
    if mode not in BATCH_MODES:
        raise ParameterError(f"batch mode must be one of {', '.join(BATCH_MODES)}, got {mode!r}")
    return str(mode)


#: Settings that may differ between the runs of one program: none changes a parameter's shape, the data
#: set (see ``train.seed`` with ``data.part`` in :func:`train_batched`) or the number and size of the steps.
VARYING: frozenset[str] = frozenset({
    "objective.beta", "model.eta_dec", "model.eta_enc", "model.encoder_std", "train.seed", "optim.lr",
    "optim.weight_decay", "optim.momentum", "schedule.name", "schedule.settings", "train.progress"})


# -- which grids can be batched ---------------------------------------------------------------------
def can_batch(configs: Sequence[RunConfig]) -> Literal[True] | str:
    """Whether these runs can be trained as one batched program by :func:`train_batched`.

    They can when they are one-level VAEs of arch ``linear`` or ``mlp`` trained with the β-ELBO in a
    single process on one device, and differ only in settings listed in :data:`VARYING` (β, η_dec,
    η_enc, a fixed encoder std, seed, lr, weight decay, momentum, the β schedule).

    Parameters
    ----------
    configs : sequence of RunConfig

    Returns
    -------
    True or str
        ``True``, or a one-line reason naming the field that prevents batching. A reason is a
        non-empty (truthy) string: test the result with ``is True``.
    """
    configs = list(configs)
    if not configs:
        return "no configurations to train"
    first = configs[0]
    model, train = first.model, first.train
    if model.kind != "vae":
        return (f"model.kind is {model.kind!r}: batched training covers the one-level VAE (its forward pass is "
                "reproduced with explicit noise); train cvae and hvae runs separately")
    if model.arch not in BATCHABLE_ARCHS:
        return f"model.arch is {model.arch!r}: batched training covers {' and '.join(BATCHABLE_ARCHS)} models"
    if first.objective.name != "elbo":
        return f"objective.name is {first.objective.name!r}: batched training covers the β-ELBO (elbo)"
    if str(train.devices) != "1" or train.num_nodes != 1 or train.strategy != "auto":
        return (f"train.devices={train.devices!r}, num_nodes={train.num_nodes}, strategy={train.strategy!r}: "
                "the batched program runs in one process on one device")
    if train.loggers:
        return f"train.loggers={train.loggers}: the batched program writes metrics.jsonl and checkpoints only"
    if train.precision != "32-true":
        return f"train.precision={train.precision!r}: the batched program runs in float32 (32-true)"
    if first.data.val_fraction is not None or train.early_stop is not None:
        return "data.val_fraction / train.early_stop: the batched program has no validation part or early stopping"
    reference = _flat(first)
    for index, config in enumerate(configs[1:], start=1):
        flat = _flat(config)
        fixed = [key for key in reference if flat[key] != reference[key] and key not in VARYING]
        if fixed:
            key = fixed[0]
            return (f"configuration {index} differs from configuration 0 in {key} ({flat[key]!r} vs "
                    f"{reference[key]!r}), which changes the parameters, the data or the steps")
    stds = [config.model.encoder_std for config in configs]
    if len({repr(std) for std in stds}) > 1 and not all(isinstance(std, float) for std in stds):
        return (f"model.encoder_std differs ({sorted({repr(s) for s in stds})}): only fixed numbers may differ, "
                "a learnable or data-dependent std changes the parameters")
    for index, config in enumerate(configs):
        if config.schedule.name == "capacity":
            return (f"configuration {index} uses schedule 'capacity', which replaces β by the capacity objective; "
                    "batched training covers the β-ELBO")
    return True


def _flat(config: RunConfig) -> dict[str, Any]:
    """``{"section.key": value}`` of the resolved configuration."""
    dump = config.model_dump(by_alias=True, mode="json")
    return {f"{section}.{key}": value for section, values in dump.items() for key, value in values.items()}
