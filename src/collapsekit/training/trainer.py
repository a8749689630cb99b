"""The training loop, on Lightning Fabric: one loop for every model and objective.

Design choices that keep runs exact and cheap:
- data live in memory as tensors on the device; an epoch is a seeded permutation sharded across
  ranks (no DataLoader: the per-step overhead is an index and a slice);
- the sampling noise is reseeded from (seed, rank, epoch) at each epoch start, so an epoch's
  randomness does not depend on what ran before it: resuming from an epoch checkpoint reproduces
  an uninterrupted run exactly, on every rank, without saving generator states;
- per-example sums are accumulated on the device and reduced across ranks once per epoch; nothing
  in the step loop reads a device value on the host (finiteness is checked from the epoch's sums);
- deterministic kernels are switched on for the run only, the caller's setting restored afterwards, and so
  are the caller's random generators, default dtype, threads and flags (:mod:`.process`);
- the run directory is locked while training (one writer); a checkpoint is written every
  ``train.checkpoint_every`` epochs and at the last, the newest ``train.keep_checkpoints`` kept, each
  with checksums; resuming passes over a corrupt newest checkpoint to the one before, saying so.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from collapsekit._io import atomic_path, exclusive_directory
from collapsekit.errors import CollapsekitError, DataError, ParameterError
from collapsekit.training.checkpoint import (Checkpoint, CheckpointWarning, checkpoint_epoch, latest_checkpoint,
                                             load_checkpoint, load_latest_checkpoint, passed_over_message,
                                             save_checkpoint)
from collapsekit.training.builders import (TrainingData, build_model_from_config,  # noqa: F401  (re-exported)
                                           build_objective_from_config, build_optimizer, load_training_data)
from collapsekit.training.config import RunConfig
from collapsekit.training.evaluation import record_final_evaluation
from collapsekit.training.layout import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE  # noqa: F401  (re-exported)
from collapsekit.training.monitor import CollapseMonitor
from collapsekit.training.process import caller_state
from collapsekit.training.validation import BEST_DIR, best_epoch, early_stop, validation_record

#: What a sweep directory holds (collapsekit.experiments.sweep): no run trains into one.
SWEEP_FILE = "sweep.yaml"
CUBLAS_WORKSPACE_CONFIG = "CUBLAS_WORKSPACE_CONFIG"


class TrainingDiverged(CollapsekitError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""


def diverged_message(run_dir: Path, epoch: int, loss: float) -> str:
    """Why training stopped at a non-finite loss, and which checkpoint is left (read from disk)."""
    latest = latest_checkpoint(Path(run_dir) / CHECKPOINT_DIR)
    kept = None if latest is None else checkpoint_epoch(latest)
    where = Path(run_dir) / CHECKPOINT_DIR
    left = (f"the last good checkpoint (epoch {kept}) is kept in {where}" if kept is not None
            else f"no checkpoint had been written yet, so there is none to resume from in {Path(run_dir)}")
    return (f"the loss became {loss} during epoch {epoch}; training stopped and {left}. "
            "Lower the learning rate or add optim.grad_clip")


@contextlib.contextmanager
def deterministic_algorithms(device: torch.device | str | None = None) -> Iterator[None]:
    """Deterministic kernels (warn-only) for the duration; the caller's setting is restored afterwards.

    On CUDA, cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG``: it is set to ``:4096:8`` unless the
    caller set it, and removed again afterwards. cuBLAS reads it when the process first uses it, so a
    program that ran cuBLAS before training should set it in its environment itself.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    set_cublas = device is not None and torch.device(device).type == "cuda" \
        and CUBLAS_WORKSPACE_CONFIG not in os.environ
    if set_cublas:
        os.environ[CUBLAS_WORKSPACE_CONFIG] = ":4096:8"
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        if set_cublas:
            os.environ.pop(CUBLAS_WORKSPACE_CONFIG, None)


class Callback(Protocol):
    """Anything with ``on_epoch_end(epoch, metrics)``; called on rank 0 after each epoch."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None: ...


@dataclass
class RunResult:
    """What ``train`` returns: the trained model, its per-epoch metrics and where they are."""

    model: nn.Module | None
    metrics: list[dict[str, Any]]
    run_dir: Path
    config: RunConfig
    resumed_from: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: The final evaluation (``evaluation.json``): the headline count on the final weights and the run's data.
    evaluation: dict[str, Any] | None = None
    #: Why and when an early-stopped run stopped (the ``stopped`` entry of its last metrics record); None otherwise.
    stopped: dict[str, Any] | None = None


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of an epoch of ``n`` examples. A last batch of a single example
    joins the one before it: batch statistics (MMD, the batch-averaged KL of free bits) need two."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch's data order (rank 0) or of a rank's sampling noise (rank + 1)."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**63 - 1)


# -- the loop -------------------------------------------------------------------------------------
class Trainer:
    """Trains a model described by a :class:`RunConfig` into a run directory.

    The run directory holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one JSON object per
    epoch: ``epoch``, ``step``, ``loss``, ``reconstruction``, ``kl``, ``kl_per_level``, ``kl_per_dim``,
    the last scheduled value (``beta_scale``, or ``capacity`` in nats), ``seconds``; losses in nats per example) and ``checkpoints/``.
    """

    def __init__(self, config: RunConfig, run_dir: str | Path, *, resume: bool = False,
                 callbacks: Sequence[Callback] = (), data: TrainingData | None = None,
                 model: nn.Module | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.callbacks = list(callbacks)
        self._data = data
        self._model = model
        self._loaded_data: TrainingData | None = None   # what _fit loaded, when it ran in this process
        self._validation: tuple[torch.Tensor, torch.Tensor | None] | None = None   # (x, y) held out, on the device

    # The work happens in ``fit`` so that Fabric can launch it in several processes.
    def fit(self) -> RunResult:
        """Train; the calling process's random generators, dtype, threads and flags are restored afterwards."""
        with caller_state():
            return self._launch()

    def _launch(self) -> RunResult:
        from lightning_fabric import Fabric

        cfg = self.config.train
        try:
            fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                            strategy=cfg.strategy, precision=cfg.precision, loggers=self._loggers())
        except ImportError as exc:                    # e.g. a precision that needs NVIDIA Transformer Engine
            raise ParameterError(f"train.precision {cfg.precision!r} / accelerator {cfg.accelerator!r}: a package "
                                 f"is missing ({str(exc).splitlines()[0]})") from None
        # launch(fn) serves every strategy: in-process, subprocess ("ddp") and spawn ("ddp_spawn").
        result = fabric.launch(self._fit)
        data = self._data if self._data is not None else self._loaded_data or load_training_data(self.config)
        if result.model is None:   # from spawned processes: rebuild the trained model from its checkpoint
            model = self._model if self._model is not None else build_model_from_config(self.config, data)
            checkpoint = latest_checkpoint(self.run_dir / CHECKPOINT_DIR)
            assert checkpoint is not None
            load_checkpoint(checkpoint).restore_model(model)
            result.model = model
        record_final_evaluation(result, data)   # the headline count on the final weights (collapsekit.activity)
        return result

    def _loggers(self) -> list[Any]:
        loggers: list[Any] = []
        for name in self.config.train.loggers:
            if name == "csv":
                from lightning_fabric.loggers import CSVLogger

                # One row per epoch, written as it comes (its default buffers 100 rows).
                loggers.append(CSVLogger(str(self.run_dir), name="logs", flush_logs_every_n_steps=1))
            else:
                try:
                    from lightning_fabric.loggers import TensorBoardLogger

                    loggers.append(TensorBoardLogger(str(self.run_dir), name="tensorboard"))
                    # The logger checks package metadata only and imports its writer at the first
                    # epoch's end: import it now, so a broken install fails before training.
                    try:
                        import torch.utils.tensorboard  # noqa: F401
                    except ImportError as missing:
                        try:
                            import tensorboardX  # noqa: F401  (Lightning's fallback writer)
                        except ImportError:
                            raise missing from None
                except (ImportError, ModuleNotFoundError) as exc:  # tensorboard is an optional extra
                    raise ParameterError(f"train.loggers: tensorboard needs `pip install tensorboard` ({exc})") \
                        from None
        return loggers

    @contextlib.contextmanager
    def _claim_run_dir(self, fabric: Any) -> Iterator[None]:
        """Hold the run directory's lock while training: a second trainer into it is refused. Rank 0
        holds it; every rank learns whether it got it."""
        if (self.run_dir / SWEEP_FILE).is_file():
            raise ParameterError(f"{self.run_dir} is a sweep directory (it holds {SWEEP_FILE}): train into "
                                 "another --out, or rerun the sweep with `collapsekit sweep`")
        refusal: str | None = None
        with contextlib.ExitStack() as stack:
            if fabric.global_rank == 0:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                try:
                    stack.enter_context(exclusive_directory(
                        self.run_dir, f"{self.run_dir} is in use: another process is training into it; wait for "
                                      "it to finish, or choose another --out (nothing was changed)"))
                except ParameterError as exc:
                    refusal = str(exc)
            if fabric.world_size > 1:
                refusal = fabric.broadcast(refusal, src=0)
            if refusal is not None:
                raise ParameterError(refusal)
            yield

    def _prepare_run_dir(self, fabric: Any) -> int:
        """Check the run directory; return the epoch to start from (0, or the checkpoint's). A resumed
        run's checkpoint (the newest intact one) is left in ``self._resume_from``."""
        config_path = self.run_dir / CONFIG_FILE
        self._resume_from: Checkpoint | None = None
        if not self.resume:
            if latest_checkpoint(self.run_dir / CHECKPOINT_DIR) is not None or (self.run_dir / METRICS_FILE).exists():
                raise ParameterError(f"{self.run_dir} already holds a run: add --resume to continue it, "
                                     "or choose another --out (nothing was overwritten)")
            if fabric.global_rank == 0:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(config_path) as temporary:
                    temporary.write_text(self.config.to_yaml())
            return 0
        if config_path.exists():
            from collapsekit.training.resume import GROWABLE, OUTPUT_ONLY, config_differences

            differences = config_differences(RunConfig.load(config_path), self.config,
                                             ignore=(*OUTPUT_ONLY, *GROWABLE))
            if differences:
                raise ParameterError(f"--resume: {self.run_dir} was trained with a different configuration: "
                                     f"{'; '.join(differences)}; resume with the same settings (only train.epochs "
                                     "may grow)")
        elif fabric.global_rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint, passed = load_latest_checkpoint(self.run_dir / CHECKPOINT_DIR)
        if passed and checkpoint is not None and fabric.global_rank == 0:
            warnings.warn(passed_over_message(passed, checkpoint, "resuming from"), CheckpointWarning, stacklevel=2)
        if fabric.global_rank == 0:
            with atomic_path(config_path) as temporary:
                temporary.write_text(self.config.to_yaml())
        self._resume_from = checkpoint
        return 0 if checkpoint is None else checkpoint.epoch

    def _read_history(self, fabric: Any, start_epoch: int) -> list[dict[str, Any]]:
        """The metrics records of epochs 1 … ``start_epoch``; rank 0 drops the later ones from the file
        (they are trained again). A line torn by a kill ends the records read."""
        metrics_path = self.run_dir / METRICS_FILE
        records: list[dict[str, Any]] = []
        lines = metrics_path.read_text(encoding="utf-8").splitlines() if metrics_path.is_file() else []
        for line in filter(str.strip, lines):
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                break
            records.append(record)
        history = [record for record in records if record["epoch"] <= start_epoch]
        if [record["epoch"] for record in history] != list(range(1, start_epoch + 1)):
            raise DataError(f"{metrics_path} does not hold the records of epochs 1 to {start_epoch} that its "
                            f"checkpoint follows (it is damaged): the run cannot be resumed; start it again "
                            "under another --out")
        if fabric.global_rank == 0 and len(history) != len(lines):
            with atomic_path(metrics_path) as temporary:   # drop epochs after the checkpoint
                temporary.write_text("".join(json.dumps(h) + "\n" for h in history))
        return history

    def _fit(self, fabric: Any) -> RunResult:
        with deterministic_algorithms(fabric.device), contextlib.ExitStack() as claimed:
            cfg = self.config
            torch.manual_seed(cfg.train.seed)                     # the initial weights
            data = self._data if self._data is not None else load_training_data(cfg)
            self._loaded_data = data
            if cfg.data.val_fraction is not None and data.validation is None:
                raise ParameterError("data.val_fraction is set but the data given to the trainer have no validation "
                                     "part: load them with load_training_data(config)")
            model = self._model if self._model is not None else build_model_from_config(cfg, data)
            objective, schedule = build_objective_from_config(cfg)
            world = fabric.world_size
            per_epoch = len(batch_bounds(data.n // world, cfg.train.batch_size))
            if data.n // world == 0:
                raise ParameterError(f"{data.n} examples cannot be shared by {world} processes")
            schedule.validate(per_epoch * cfg.train.epochs)
            claimed.enter_context(self._claim_run_dir(fabric))
            start_epoch = self._prepare_run_dir(fabric)
            checkpoint = self._resume_from
            optimizer = build_optimizer(cfg, list(model.parameters()))
            history = self._read_history(fabric, start_epoch) if self.resume else []
            raw_model, raw_optimizer = model, optimizer
            model, optimizer = fabric.setup(model, optimizer)
            if checkpoint is not None:
                # After setup, where the parameters have their device and dtype: the weights are copied
                # into them, and torch casts the optimiser state to each parameter's as it loads.
                checkpoint.restore_model(raw_model)
                checkpoint.restore_optimizer(raw_optimizer)
            x = fabric.to_device(data.x)
            y = None if data.y is None else fabric.to_device(data.y)
            held_out = data.validation
            self._validation = None if held_out is None else (
                fabric.to_device(held_out.x), None if held_out.y is None else fabric.to_device(held_out.y))
            n_samples = cfg.objective.k if cfg.objective.name == "iwae" else 1
            monitor = self._monitor(fabric, data, per_epoch, start_epoch, checkpoint)
            status = "failed"
            try:
                if history and history[-1].get("stopped"):   # a run that early stopping ended is finished
                    start_epoch = cfg.train.epochs
                history = self._train_epochs(fabric, model, optimizer, raw_model, raw_optimizer, objective, schedule,
                                             x, y, start_epoch, per_epoch, n_samples, history, monitor)
                status = "success"
            finally:
                for logger in fabric.loggers:   # flush and close them: Fabric does not
                    logger.finalize(status)
            extras = {"rank_weight_mismatch": _rank_weight_mismatch(fabric, raw_model)} if world > 1 else {}
        # Several processes hand their result back through a pipe that cannot carry tensors safely
        # once the worker exits; the parent reloads the weights from the final checkpoint instead.
        return RunResult(model=raw_model if world == 1 else None, metrics=history, run_dir=self.run_dir,
                         config=cfg, resumed_from=(checkpoint.epoch if checkpoint is not None else None),
                         extras=extras, stopped=history[-1].get("stopped") if history else None)

    def _train_epochs(self, fabric: Any, model: Any, optimizer: Any, raw_model: nn.Module,
                      raw_optimizer: torch.optim.Optimizer, objective: Any, schedule: Any, x: torch.Tensor,
                      y: torch.Tensor | None, start_epoch: int, per_epoch: int, n_samples: int,
                      history: list[dict[str, Any]], monitor: CollapseMonitor | None) -> list[dict[str, Any]]:
        cfg = self.config
        metrics_path = self.run_dir / METRICS_FILE
        show = cfg.train.progress and fabric.global_rank == 0
        from collapsekit._progress import training_progress

        with training_progress(cfg.train.epochs, per_epoch, enabled=show, start_epoch=start_epoch) as progress:
            for epoch in range(start_epoch + 1, cfg.train.epochs + 1):
                started = time.perf_counter()
                progress.start_epoch(epoch)
                sums = self._run_epoch(fabric, model, optimizer, objective, schedule, x, y, epoch, per_epoch,
                                       n_samples, progress, monitor)
                record = self._epoch_record(fabric, sums, epoch, epoch * per_epoch, time.perf_counter() - started,
                                            schedule.controls, schedule.value(epoch * per_epoch - 1))
                if not math.isfinite(record["loss"]):
                    became = record["loss"]
                    if bool(sums["nonfinite_seen"]):          # read once, on the way out: inf or nan
                        became = float(sums["first_nonfinite"])
                    raise TrainingDiverged(diverged_message(self.run_dir, epoch, became))
                if monitor is not None:
                    monitor.end_epoch(reduce=lambda t: fabric.all_reduce(t, reduce_op="sum"),
                                      step=epoch * per_epoch, epoch=epoch)
                    record |= monitor.epoch_metrics()
                stopped = None
                if self._validation is not None:
                    record |= validation_record(model, raw_model, objective,
                                                {schedule.controls: schedule.value(epoch * per_epoch - 1)},
                                                *self._validation, seed=cfg.train.seed)
                    if cfg.train.early_stop is not None:
                        stopped = early_stop([*history, record], cfg.train.early_stop)
                        if fabric.world_size > 1:          # one decision for every rank: rank 0's
                            stopped = fabric.broadcast(stopped, src=0)
                        if stopped is not None:
                            record["stopped"] = stopped
                history.append(record)
                progress.end_epoch(record)
                if fabric.global_rank == 0:
                    # the stopped epoch's weights are the final ones: checkpoint them
                    self._write_epoch(metrics_path, record, raw_model, raw_optimizer, monitor,
                                      checkpoint=True if stopped is not None else None)
                    if self._validation is not None and (best_epoch(history) or (None,))[0] == epoch:
                        save_checkpoint(self.run_dir / BEST_DIR, epoch=epoch, model=raw_model.state_dict(),
                                        optimizer=raw_optimizer.state_dict(), state={"step": record["step"]}, keep=1)
                    for callback in self.callbacks:
                        callback.on_epoch_end(epoch, record)
                fabric.log_dict({k: v for k, v in record.items() if isinstance(v, float)}, step=epoch)
                fabric.barrier()
                if stopped is not None:
                    break
        return history

    def _run_epoch(self, fabric: Any, model: Any, optimizer: Any, objective: Any, schedule: Any,
                   x: torch.Tensor, y: torch.Tensor | None, epoch: int, per_epoch: int, n_samples: int,
                   progress: Any, monitor: CollapseMonitor | None = None) -> dict[str, Any]:
        cfg = self.config.train
        world, rank = fabric.world_size, fabric.global_rank
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch)))
        shard = order[: (x.shape[0] // world) * world][rank::world].to(x.device)
        torch.manual_seed(epoch_seed(cfg.seed, epoch, rank + 1))   # this epoch's sampling noise
        clip = self.config.optim.grad_clip
        sums: dict[str, Any] = {}
        first_step = (epoch - 1) * per_epoch
        for index, (start, stop) in enumerate(batch_bounds(shard.numel(), cfg.batch_size)):
            batch = shard[start:stop]
            if self.config.optim.lr_schedule == "cosine":   # a function of the step: resume needs no state
                total = per_epoch * cfg.epochs
                for group in optimizer.param_groups:
                    group["lr"] = self.config.optim.lr * 0.5 * (1 + math.cos(math.pi * (first_step + index) / total))
            output = model(x[batch], None if y is None else y[batch], n_samples=n_samples)
            # the schedule drives β's factor, or the capacity C(t) of a capacity objective
            terms = objective(output, **{schedule.controls: schedule.value(first_step + index)})
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(terms.loss)
            if clip is not None:   # a non-finite norm is not checked here (a host read): the epoch's sums show it
                fabric.clip_gradients(model, optimizer, max_norm=clip, error_if_nonfinite=False)
            optimizer.step()
            accumulate_terms(sums, terms, len(batch))
            _track_nonfinite(sums, terms.loss)
            if monitor is not None:
                monitor.update_output(output, terms.kl_per_dim)
            # No finiteness check here: it would read the loss on the host at every step. A NaN or
            # infinite loss makes the epoch's sums non-finite, and the epoch's record stops the run.
            progress.advance()
        return sums

    def _epoch_record(self, fabric: Any, sums: dict[str, Any], epoch: int, step: int, seconds: float,
                      scheduled: str, scheduled_value: float) -> dict[str, Any]:
        count = fabric.all_reduce(sums["count"], reduce_op="sum")
        mean = lambda key: fabric.all_reduce(sums[key], reduce_op="sum") / count  # noqa: E731
        kl_levels = mean("kl")
        per_dim = [mean(f"kl_dim{i}") for i in range(len(kl_levels))]
        return {"epoch": epoch, "step": step, "examples": int(count), "loss": float(mean("loss")),
                "reconstruction": float(mean("reconstruction")), "kl": float(kl_levels.sum()),
                "kl_per_level": [float(v) for v in kl_levels],
                "kl_per_dim": [[float(v) for v in level] for level in per_dim],
                scheduled: float(scheduled_value), "seconds": round(seconds, 4)}

    def _write_epoch(self, metrics_path: Path, record: dict[str, Any], model: nn.Module,
                     optimizer: torch.optim.Optimizer, monitor: CollapseMonitor | None = None, *,
                     checkpoint: bool | None = None) -> None:
        """Append the epoch's metrics line; write a checkpoint when ``checkpoint`` says so (by default
        every ``train.checkpoint_every`` epochs and at the last epoch)."""
        with open(metrics_path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        train = self.config.train
        if checkpoint is None:
            checkpoint = record["epoch"] % train.checkpoint_every == 0 or record["epoch"] >= train.epochs
        if not checkpoint:
            return
        state: dict[str, Any] = {"step": record["step"]}
        if monitor is not None:
            # Its hysteresis counters and warnings, so a resumed run warns as an uninterrupted one;
            # only the last epoch of its history (the rest is in metrics.jsonl).
            state["monitor"] = monitor.state_dict() | {"history": monitor.history[-1:]}
        save_checkpoint(self.run_dir / CHECKPOINT_DIR, epoch=record["epoch"], model=model.state_dict(),
                        optimizer=optimizer.state_dict(), state=state, keep=train.keep_checkpoints)

    def _monitor(self, fabric: Any, data: TrainingData, per_epoch: int, start_epoch: int,
                 checkpoint: Checkpoint | None = None) -> CollapseMonitor | None:
        """The run's CollapseMonitor (``train.monitor``), restored from ``checkpoint`` on resume."""
        cfg = self.config
        if not cfg.train.monitor:
            return None
        monitor = CollapseMonitor.from_config(cfg, data, total_steps=per_epoch * cfg.train.epochs,
                                              warn=fabric.global_rank == 0, seed=cfg.train.seed)
        if start_epoch and checkpoint is not None and "monitor" in checkpoint.state:
            monitor.load_state_dict(checkpoint.state["monitor"])
        return monitor


def _rank_weight_mismatch(fabric: Any, model: nn.Module) -> float:
    """Largest difference between ranks of (Σθ, Σθ²) over all parameters: 0 when DDP kept them in step."""
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    summary = torch.stack([flat.sum(), (flat**2).sum()])
    gathered = fabric.all_gather(summary)                 # (world, 2)
    mismatch = float((gathered - gathered[0]).abs().max())
    if mismatch > 0 and fabric.global_rank == 0:
        import warnings

        warnings.warn(f"DDP ranks ended with different weights (checksum difference {mismatch:.3g})", stacklevel=2)
    return mismatch


def accumulate_terms(sums: dict[str, Any], terms: Any, batch_size: int) -> None:
    """Add per-example sums (weighted by batch size) on the device; no host sync per step. Half-precision
    terms are summed in float32 (an epoch's sum overflows float16 and loses digits in bfloat16)."""
    weight = float(batch_size)
    values = {"loss": terms.loss.detach(), "reconstruction": terms.reconstruction.detach(),
              "kl": terms.kl.detach()}
    values |= {f"kl_dim{i}": level.detach() for i, level in enumerate(terms.kl_per_dim)}
    for key, value in values.items():
        if value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        sums[key] = sums.get(key, 0) + value * weight
    sums["count"] = sums.get("count", 0) + weight
    if not isinstance(sums["count"], torch.Tensor):
        sums["count"] = torch.tensor(sums["count"], device=terms.loss.device)


def _track_nonfinite(sums: dict[str, Any], loss: torch.Tensor) -> None:
    """Keep the epoch's first non-finite loss (inf or nan) on the device, without a host read, for the
    message of a run that diverges (the epoch's sum of an inf followed by nans is nan)."""
    loss = loss.detach()
    bad = ~torch.isfinite(loss)
    if "nonfinite_seen" not in sums:
        sums["first_nonfinite"], sums["nonfinite_seen"] = torch.zeros_like(loss), torch.zeros_like(bad)
    sums["first_nonfinite"] = torch.where(bad & ~sums["nonfinite_seen"], loss, sums["first_nonfinite"])
    sums["nonfinite_seen"] = sums["nonfinite_seen"] | bad


def train(config: RunConfig, run_dir: str | Path, *, resume: bool = False,
          callbacks: Sequence[Callback] = ()) -> RunResult:
    """Train the model a config describes into ``run_dir`` (see :class:`Trainer`)."""
    return Trainer(config, run_dir, resume=resume, callbacks=callbacks).fit()


def evaluate(model: nn.Module, objective: Callable[..., Any], data: TrainingData, *, n_samples: int = 1,
             batch_size: int = 1024, seed: int = 0) -> dict[str, Any]:
    """Average loss terms of ``model`` over all of ``data`` (no gradients), nats per example.

    With ``n_samples`` > 1 each example's Monte Carlo terms average over that many latent samples. The
    data may be anywhere: each batch goes to the model's device and dtype. The global RNG state (the
    CPU's, and the model's GPU's) is restored.
    """
    from collapsekit.diagnostics.posterior import reference, to_device

    device, dtype = reference(model, data=data.x)
    sums: dict[str, Any] = {}
    with caller_state():
        torch.manual_seed(seed)
        with torch.no_grad():
            for start in range(0, data.n, batch_size):
                stop = min(start + batch_size, data.n)
                output = model(to_device(data.x[start:stop], device, dtype),
                               None if data.y is None else to_device(data.y[start:stop], device, dtype),
                               n_samples=n_samples)
                accumulate_terms(sums, objective(output), stop - start)
    count = sums["count"]
    kl_levels = sums["kl"] / count
    return {"loss": float(sums["loss"] / count), "reconstruction": float(sums["reconstruction"] / count),
            "kl": float(kl_levels.sum()), "kl_per_level": kl_levels.tolist(),
            "kl_per_dim": [(sums[f"kl_dim{i}"] / count).tolist() for i in range(len(kl_levels))]}
