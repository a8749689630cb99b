"""CollapseMonitor: per-dimension KL, active units and a minibatch MI estimate while training, and a
warning (once, with hysteresis) that names collapsed dimensions, says why and what to change.

Cheap enough to leave on: per batch it adds a few elementwise ops and three per-dimension sums on the
device, with no host synchronisation; everything else happens once per epoch (bench/bench_monitor.py
measures the overhead). It never draws from the global random generator, so switching it on does not
change a run. Inputs of any floating dtype are welcome (an autocast loop's bfloat16 or float16): each
batch is cast to float32 on its device and every sum is kept in float32 (float64 inputs stay float64).

Plain PyTorch loop::

    from collapsekit.training.monitor import CollapseMonitor
    from collapsekit.theory import Moments

    monitor = CollapseMonitor(hyper={"beta": 4.0, "eta_dec": 1.0}, moments=Moments.from_data(x_train))
    for epoch in range(epochs):
        for xb in loader:
            mu, log_var = encoder(xb)
            z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
            loss = recon_loss(decoder(z), xb) + beta * kl(mu, log_var)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            monitor.update(mu, log_var)              # per batch: on-device sums only
        stats = monitor.end_epoch()                  # per epoch: stats, hysteresis, maybe a CollapseWarning
        print(stats["z"]["active_units"], stats["z"]["collapsed"])

With collapsekit's models, call ``monitor.update_output(output)`` (alias ``observe``) per batch instead:
every latent level is tracked, with the KL each level's objective term uses (analytic at the top,
the paired estimate −H[q] − log p(z|z_above) below it).

Hysteresis (per latent dimension, per level; ``threshold`` = 0.01 nats, :mod:`collapsekit.activity`)
------------------------------------------------------------------------------------------------
* A dimension is *collapsed in an epoch* when its epoch-mean KL is < ``threshold`` nats: the headline
  rule, applied to the epoch's batches (the weights change while they are seen). Each epoch record
  carries that count (``n_active``); warnings report it too.
* It is *confirmed collapsed* after ``patience`` consecutive such epochs.
* A :class:`CollapseWarning` is issued at the end of an epoch when some confirmed dimension has not
  been warned about, unless other dimensions are still on their way (below the threshold for fewer
  than ``patience`` epochs): then it waits, at most ``patience`` epochs, so that one warning names the
  whole set of a collapse in progress. It names every confirmed dimension (and which are new), and
  the warned dimensions are remembered: a dimension already warned about never triggers another
  warning, however its KL oscillates around the threshold. Only a collapse spreading to dimensions
  not yet warned about gives a further warning.
* A warned dimension is *recovered* (and can trigger a warning again) only after ``patience``
  consecutive epochs with KL ≥ ``recover_factor`` × ``threshold``.

The parts, one job each: :mod:`.options` (the settings, :class:`MonitorOptions`), :mod:`.sums` (one
level's on-device sums over an epoch), :mod:`.hysteresis` (one level's collapse state), :mod:`.explainer`
(from the theory to the text of a warning), :mod:`.events` (the warning and its record),
:mod:`.collapse_monitor` (:class:`CollapseMonitor`, which drives them) and :mod:`.callback` (the
Lightning callback, defined on first use). The minibatch MI estimate is
:func:`collapsekit.diagnostics.mutual_info.mutual_info_one_batch`.
"""

from __future__ import annotations

from typing import Any

from collapsekit.training.monitor.callback import lightning_callback, lightning_class
from collapsekit.training.monitor.collapse_monitor import STATE_FORMAT, CollapseMonitor
from collapsekit.training.monitor.events import CollapseEvent, CollapseWarning
from collapsekit.training.monitor.options import MonitorOptions
from collapsekit.training.monitor.sums import accumulation_dtype

# LightningCollapseMonitor is served by __getattr__ (it imports Lightning on first use).
__all__ = ["STATE_FORMAT", "CollapseEvent", "CollapseMonitor", "CollapseWarning", "MonitorOptions",
           "accumulation_dtype", "lightning_callback"]


def __getattr__(name: str) -> Any:
    # ``from collapsekit.training.monitor import LightningCollapseMonitor`` imports Lightning only then.
    if name == "LightningCollapseMonitor":
        return lightning_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
