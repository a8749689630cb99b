"""collapsekit's collapse monitor inside Pythae's trainer (``pythae>=0.1.2,<0.2``; tested with 0.1.2).

>>> from pythae.trainers import BaseTrainer, BaseTrainerConfig
>>> from collapsekit.integrations.pythae import PythaeCollapseMonitor
>>> monitor = PythaeCollapseMonitor()                                            # doctest: +SKIP
>>> BaseTrainer(model, train_data, training_config=BaseTrainerConfig(num_epochs=10),
...             callbacks=[monitor]).train()                                    # doctest: +SKIP
>>> monitor.monitor.history[-1]["levels"]["z"]["n_active"]                        # doctest: +SKIP

Pythae's callbacks see the model but not the batches, so the callback observes the encoder: from
``on_train_begin`` to ``on_train_end`` a forward hook on ``model.encoder`` adds each training forward's
posterior (``embedding``, ``log_covariance``) to the monitor — only while the model is in training mode,
so evaluation and prediction passes are not counted. Each epoch end closes the monitor's epoch
(per-dimension KL, the headline active count, a ``CollapseWarning`` with its explanation) and adds the
epoch's numbers to Pythae's logs (``train_collapse_z_n_active``, ...: what its wandb, MLflow and Comet
callbacks record, when this callback is listed before them). The hook is
removed at the end of training (and by :meth:`PythaeCollapseMonitor.close`): the model is left as it was
found, and since the monitor never draws from the global random generator, a run with the callback
trains exactly the weights it trains without it.
"""

from __future__ import annotations

from typing import Any

from pythae.trainers.training_callbacks import TrainingCallback
from torch import nn
from torch.utils.hooks import RemovableHandle

from collapsekit.adapters import as_adapter
from collapsekit.errors import ParameterError
from collapsekit.training import CollapseMonitor


class PythaeCollapseMonitor(TrainingCallback):
    """A Pythae ``TrainingCallback`` running a :class:`~collapsekit.training.CollapseMonitor`.

    Parameters
    ----------
    monitor : CollapseMonitor, optional
        The monitor to drive. Built from ``**kwargs`` when omitted; it then learns β (and η_dec = 1 for
        Pythae's ``"mse"`` loss, a unit-variance Gaussian) from the model at the start of training, for its
        explanations, unless ``hyper`` says otherwise.
    **kwargs
        :class:`~collapsekit.training.CollapseMonitor`'s keyword arguments.

    Attributes
    ----------
    monitor : CollapseMonitor
        ``monitor.history`` holds one record per epoch.
    steps : int
        Optimiser steps seen (Pythae's ``on_train_step_end`` calls).
    """

    def __init__(self, monitor: CollapseMonitor | None = None, **kwargs: Any) -> None:
        if monitor is not None and kwargs:
            raise ParameterError("pass a CollapseMonitor or its keyword arguments, not both")
        self._learn_hyper = monitor is None and "hyper" not in kwargs
        self.monitor = monitor if monitor is not None else CollapseMonitor(**kwargs)
        self.steps = 0
        self._epoch: int | None = None
        self._seen = False
        self._hook: RemovableHandle | None = None

    def __repr__(self) -> str:
        return type(self).__name__

    def on_train_begin(self, training_config: Any, **kwargs: Any) -> None:
        model = kwargs.get("model")
        encoder = getattr(model, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise ParameterError("PythaeCollapseMonitor: the trainer passed no Pythae model with an encoder")
        adapter = as_adapter(model)                  # refuses models without a Gaussian posterior and N(0, I) prior
        if self._learn_hyper and adapter.beta is not None and adapter.beta > 0:
            self.monitor.hyper.setdefault("beta", adapter.beta)
            if getattr(adapter, "reconstruction_loss", None) == "mse":
                self.monitor.hyper.setdefault("eta_dec", 1.0)
        self.close()
        self._hook = encoder.register_forward_hook(self._observe)

    def _observe(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if module.training:
            self.monitor.update(output["embedding"], output["log_covariance"])
            self._seen = True

    def on_train_step_end(self, training_config: Any, **kwargs: Any) -> None:
        self.steps += 1

    def on_epoch_begin(self, training_config: Any, **kwargs: Any) -> None:
        self._epoch = kwargs.get("epoch")

    def on_epoch_end(self, training_config: Any, **kwargs: Any) -> None:
        if self._seen:
            self.monitor.end_epoch(step=self.steps, epoch=self._epoch)
            self._seen = False

    def on_log(self, training_config: Any, logs: dict[str, Any], **kwargs: Any) -> None:
        """Add the epoch's collapse numbers to Pythae's logs as ``train_collapse_<level>_<name>`` (``n_active``,
        ``kl``, ``active_units``, ``mutual_info``), which Pythae's wandb/MLflow/Comet callbacks record as
        ``train/collapse_...``: list this callback before them."""
        if not self.monitor.history or self.monitor.history[-1]["epoch"] != self._epoch:
            return
        for level, values in self.monitor.history[-1]["levels"].items():
            numbers = {"n_active": values["n_active"], "kl": values["kl"], "active_units": values["active_units"],
                       "mutual_info": values["mutual_info_minibatch"]}
            logs.update({f"train_collapse_{level}_{key}": value for key, value in numbers.items()
                         if value is not None})

    def on_train_end(self, training_config: Any, **kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """Remove the forward hook (done at the end of training; safe to call again)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
