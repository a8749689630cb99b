"""The collapse monitor as a PyTorch Lightning callback, defined on first use so that collapsekit
imports without Lightning (``collapsekit[lightning]``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collapsekit.errors import ParameterError
from collapsekit.training.monitor.collapse_monitor import CollapseMonitor

_LIGHTNING_CLASS: Any = None


def lightning_class() -> Any:
    """Define the Lightning callback class on first use, so collapsekit imports without Lightning."""
    global _LIGHTNING_CLASS
    if _LIGHTNING_CLASS is not None:
        return _LIGHTNING_CLASS
    try:
        from lightning.pytorch import Callback
    except ImportError:
        raise ImportError("LightningCollapseMonitor needs PyTorch Lightning: pip install 'collapsekit[lightning]' "
                          "(or pip install lightning)") from None

    class LightningCollapseMonitor(Callback):  # type: ignore[misc,valid-type]
        """A :class:`CollapseMonitor` as a Lightning callback.

        Contract: the LightningModule's ``training_step`` returns a dict with ``"loss"``, ``"mu"`` and
        ``"log_var"`` (the encoder's outputs for the batch, shape (B, d); a collapsekit ``ModelOutput``
        under ``"output"`` works instead and tracks every level). Per batch the callback adds them to
        the monitor; at each training epoch end it closes the epoch (summing across processes under DDP)
        and logs ``collapse/<level>/active_units``, ``.../n_collapsed``, ``.../kl`` (nats) and
        ``.../mutual_info`` (nats) with ``pl_module.log``. Warnings are issued on global rank 0 only.

        Parameters
        ----------
        monitor : CollapseMonitor, optional
            The monitor to drive; built from ``**kwargs`` (:class:`CollapseMonitor`'s) when omitted.
        """

        def __init__(self, monitor: CollapseMonitor | None = None, **kwargs: Any) -> None:
            super().__init__()
            self.monitor = monitor if monitor is not None else CollapseMonitor(**kwargs)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if not isinstance(outputs, Mapping):
                raise ParameterError("LightningCollapseMonitor: training_step must return a dict with 'loss', "
                                     "'mu' and 'log_var' (or 'output', a ModelOutput)")
            if "output" in outputs:
                self.monitor.update_output(outputs["output"])
            elif "mu" in outputs and "log_var" in outputs:
                self.monitor.update(outputs["mu"], outputs["log_var"])
            else:
                raise ParameterError("LightningCollapseMonitor: training_step's dict has no 'mu' and 'log_var' "
                                     f"(keys: {sorted(outputs)})")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            world = getattr(trainer, "world_size", 1)
            reduce = None if world == 1 else (lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
            self.monitor.warn = self.monitor.warn and trainer.is_global_zero
            stats = self.monitor.end_epoch(reduce=reduce, step=trainer.global_step,
                                           epoch=trainer.current_epoch + 1)
            for name, values in stats.items():
                logged = {"active_units": values["active_units"], "n_collapsed": values["n_collapsed"],
                          "kl": values["kl"]}
                if values["mutual_info_minibatch"] is not None:
                    logged["mutual_info"] = values["mutual_info_minibatch"]
                for key, value in logged.items():
                    pl_module.log(f"collapse/{name}/{key}", float(value), on_epoch=True, sync_dist=False)

        def state_dict(self) -> dict[str, Any]:
            return self.monitor.state_dict()

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.monitor.load_state_dict(state_dict)

    _LIGHTNING_CLASS = LightningCollapseMonitor
    return _LIGHTNING_CLASS


def lightning_callback(monitor: CollapseMonitor | None = None, **kwargs: Any) -> Any:
    """A ``lightning.pytorch.Callback`` driving ``monitor`` (or a new one built from ``kwargs``).

    Raises
    ------
    ImportError
        With the install command, when PyTorch Lightning is not installed.
    """
    return lightning_class()(monitor, **kwargs)
