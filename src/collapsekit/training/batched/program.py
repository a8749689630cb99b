"""The batched program: K runs' models stacked, trained together, each run's directory written as its
trainer would write it (:mod:`collapsekit.training.batched` says what is reproduced and how)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from collapsekit.errors import ParameterError
from collapsekit.models.vae import VAE
from collapsekit.objectives.elbo import BetaELBO
from collapsekit.objectives.terms import LossTerms
from collapsekit.training.batched.eligibility import can_batch, check_batch_mode
from collapsekit.training.batched.explicit_noise import ExplicitNoiseVAE
from collapsekit.training.batched.linear import template
from collapsekit.training.batched.monitor_sums import StackedMonitorSums
from collapsekit.training.batched.optimizers import StackedOptimizers, optimizer_key
from collapsekit.training.config import RunConfig, TrainConfig
from collapsekit.training.evaluation import record_final_evaluation
from collapsekit.training.monitor import CollapseMonitor
from collapsekit.training.trainer import (METRICS_FILE, RunResult, Trainer, TrainingData, accumulate_terms,
                                          batch_bounds, build_model_from_config, build_objective_from_config,
                                          build_optimizer, deterministic_algorithms, diverged_message, epoch_seed,
                                          load_training_data)


class OneProcess:
    """What the trainer's run-directory helpers use of Fabric, for a single process."""

    global_rank = 0
    world_size = 1

    @staticmethod
    def all_reduce(value: Tensor, reduce_op: str = "sum") -> Tensor:
        return value


def train_batched(configs: Sequence[RunConfig], run_dirs: Sequence[str | Path], *,
                  data: TrainingData | None = None, mode: str = "exact") -> list[RunResult]:
    """Train K runs as one batched program; each ends as ``Trainer(configs[k], run_dirs[k]).fit()`` would.

    Parameters
    ----------
    configs : sequence of RunConfig
        Runs that :func:`can_batch` accepts.
    run_dirs : sequence of path
        One new run directory per configuration (an existing run is not overwritten).
    data : TrainingData, optional
        The data of every run, as ``Trainer(data=...)`` takes it; loaded from the configurations
        otherwise (once, or once per seed when ``data.part`` makes the train/test split depend on
        ``train.seed``).
    mode : {"exact", "fast"}
        ``exact``: bit for bit the separate runs; ``fast``: batched products, the same up to rounding
        (:mod:`collapsekit.training.batched`).

    Returns
    -------
    list of RunResult
        In the order of ``configs``: the trained model, the per-epoch metrics (``seconds`` is the wall
        time of the whole batched epoch), the run directory; ``extras["batched_runs"]`` is K. A run
        whose loss became NaN or infinite stops being recorded there (the others go on):
        ``extras["diverged"]`` says when, and its model holds the weights of its last checkpoint, as
        a separate run would have stopped with :class:`~collapsekit.training.TrainingDiverged`.

    Raises
    ------
    ParameterError
        The runs cannot be batched (the reason of :func:`can_batch`), the numbers of configurations
        and directories differ, two runs share a directory, or a directory already holds a run.
    """
    mode = check_batch_mode(mode)
    configs, dirs = list(configs), [Path(d) for d in run_dirs]
    if len(configs) != len(dirs):
        raise ParameterError(f"run_dirs: {len(dirs)} directories for {len(configs)} configurations")
    verdict = can_batch(configs)
    if verdict is not True:
        raise ParameterError(f"these runs cannot be trained as one batched program: {verdict}")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise ParameterError("run_dirs: two runs share a directory")
    # An optimiser owns whole rows of the stack, so runs that share optimiser settings are made
    # neighbours; results go back in the caller's order.
    keys = [optimizer_key(config) for config in configs]
    order = sorted(range(len(configs)), key=lambda k: keys.index(keys[k]))
    # The trainer's setting: the same kernels as a separate run, for this program only.
    with deterministic_algorithms(_device(configs[0].train)):
        results = _Program([configs[k] for k in order], [dirs[k] for k in order], data, mode).fit()
    by_caller: list[RunResult | None] = [None] * len(configs)
    for position, k in enumerate(order):
        by_caller[k] = results[position]
    return [result for result in by_caller if result is not None]


def _device(train: TrainConfig) -> torch.device:
    """The device the trainer's Fabric would use for ``train.accelerator`` with one device."""
    from lightning_fabric import Fabric

    return Fabric(accelerator=train.accelerator, devices=1).device


def _run_data(configs: Sequence[RunConfig], data: TrainingData | None) -> list[TrainingData]:
    """The data of each run: shared, or one set per seed when the train/test split depends on it."""
    if data is not None:
        return [data] * len(configs)
    loaded: dict[int | None, TrainingData] = {}
    runs = []
    for config in configs:
        key = config.train.seed if config.data.part is not None else None
        if key not in loaded:
            loaded[key] = load_training_data(config)
        runs.append(loaded[key])
    return runs


class _Program:
    """The K runs, stacked; ``fit`` trains them and writes every run directory."""

    def __init__(self, configs: list[RunConfig], run_dirs: list[Path], data: TrainingData | None,
                 mode: str = "exact") -> None:
        self.configs, self.run_dirs, self.k = configs, run_dirs, len(configs)
        self.exact = mode == "exact"
        first = configs[0]
        self.device = _device(first.train)
        runs_data = _run_data(configs, data)
        self.runs_data = runs_data
        if len({(d.n, tuple(d.x.shape[1:])) for d in runs_data}) > 1:
            raise ParameterError("the runs' data sets differ in size; train them separately")
        self.n = runs_data[0].n
        # One copy of shared data, or one (N, D) slab per run (a train/test split per seed).
        self.x = (runs_data[0].x if all(d is runs_data[0] for d in runs_data)
                  else torch.stack([d.x for d in runs_data])).to(self.device)
        self.run_index = torch.arange(self.k, device=self.device)[:, None]

        with torch.random.fork_rng(devices=[]):            # leave the caller's generator alone
            models = []
            for config, run_data in zip(configs, runs_data):
                torch.manual_seed(config.train.seed)      # the trainer's initial weights
                models.append(build_model_from_config(config, run_data))
        vaes = [model for model in models if isinstance(model, VAE)]
        if len(vaes) != len(models):
            raise ParameterError("batched training covers the one-level VAE")
        self.models = [vae.to(self.device) for vae in vaes]
        self.wrappers = [ExplicitNoiseVAE(vae) for vae in self.models]
        self.latent_dim = self.models[0].latent_dim

        objectives, self.schedules = zip(*(build_objective_from_config(config) for config in configs))
        if not all(isinstance(objective, BetaELBO) for objective in objectives):
            raise ParameterError("batched training covers the β-ELBO")
        self.per_epoch = len(batch_bounds(self.n, first.train.batch_size))
        for schedule in self.schedules:
            schedule.validate(self.per_epoch * first.train.epochs)
        self.betas = torch.tensor([objective.betas(1) for objective in objectives], dtype=torch.float32,
                                  device=self.device)                                             # (K, L)
        self.eta_enc = torch.tensor([config.model.eta_enc for config in configs], dtype=torch.float32,
                                    device=self.device)                                           # (K,)
        # β-independent terms (reconstruction, KL, the free-bits floor) come from BetaELBO itself; the
        # β weighting, which differs per run, is applied in _terms exactly as BetaELBO applies it.
        self.unweighted = BetaELBO(1.0, free_bits=first.objective.free_bits)

        params, self.buffers = stack_module_state(self.wrappers)
        self.optimizers = StackedOptimizers(configs, params)
        # The template only lends its code: every tensor comes from the stacks at call time.
        self.template = template(self.wrappers[0], exact=self.exact)
        self.batched_terms = vmap(self._terms)
        self.trainers = [Trainer(config, run_dir) for config, run_dir in zip(configs, run_dirs)]
        # Each run's own monitor, as its trainer would make it; runs on the same data share the data's
        # moments (O(n·D²) each: 0.3 s per run on mnist10k), computed by the first of them.
        self.monitors: list[CollapseMonitor | None] = []
        moments: dict[int, Any] = {}
        for trainer, config, run_data in zip(self.trainers, configs, runs_data):
            if id(run_data) in moments and config.train.monitor:
                monitor = CollapseMonitor.from_config(config, run_data, moments=moments[id(run_data)],
                                                      total_steps=self.per_epoch * config.train.epochs, warn=True,
                                                      seed=config.train.seed)
            else:
                monitor = trainer._monitor(OneProcess(), run_data, self.per_epoch, 0)
                if monitor is not None:
                    moments[id(run_data)] = monitor.moments
            self.monitors.append(monitor)
        self.run_optimizers = [build_optimizer(config, list(model.parameters()))
                               for config, model in zip(configs, self.models)]

    def _terms(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, noise: Tensor,
               eta_enc: Tensor, weight: Tensor) -> tuple[Tensor, ...]:
        """One run's loss terms (vmapped over the runs): loss, reconstruction, KL (L,), KL per dimension,
        and the posterior's loc and scale (for the run's CollapseMonitor)."""
        output = functional_call(self.template, (params, buffers), (x, noise, eta_enc))
        terms = self.unweighted(output)
        kl_objective = terms.extras.get("kl_objective", terms.kl)
        loss = terms.reconstruction + (weight * kl_objective).sum()       # BetaELBO's weighting, this run's β
        q = output.levels[0].posterior
        return loss, terms.reconstruction, terms.kl, terms.kl_per_dim[0], q.loc, q.scale

    # -- training ----------------------------------------------------------------------------------
    def fit(self) -> list[RunResult]:
        for trainer in self.trainers:
            trainer._prepare_run_dir(OneProcess())                # refuses a directory holding a run
        epochs = self.configs[0].train.epochs
        history: list[list[dict[str, Any]]] = [[] for _ in range(self.k)]
        diverged: dict[int, str] = {}
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            sums = self._run_epoch(epoch)
            seconds = time.perf_counter() - started
            step = epoch * self.per_epoch
            for k in range(self.k):
                if k in diverged:
                    continue
                schedule = self.schedules[k]
                run_sums = {key: value if key == "count" else value[k] for key, value in sums.items()}
                record = self.trainers[k]._epoch_record(OneProcess(), run_sums, epoch, step, seconds,
                                                        schedule.controls, schedule.value(step - 1))
                if not math.isfinite(record["loss"]):
                    diverged[k] = diverged_message(self.run_dirs[k], epoch, record["loss"])
                    continue
                monitor = self.monitors[k]
                if monitor is not None:
                    monitor.end_epoch(step=step, epoch=epoch)
                    record |= monitor.epoch_metrics()
                history[k].append(record)
                self.optimizers.copy_out(k, self.wrappers[k], self.run_optimizers[k])
                self.trainers[k]._write_epoch(self.run_dirs[k] / METRICS_FILE, record, self.models[k],
                                              self.run_optimizers[k], monitor)
        results = [RunResult(model=self.models[k], metrics=history[k], run_dir=self.run_dirs[k],
                             config=self.configs[k],
                             extras={"batched_runs": self.k} | ({"diverged": diverged[k]} if k in diverged else {}))
                   for k in range(self.k)]
        for k, result in enumerate(results):
            if k not in diverged:     # as a separate run ends: the headline count on the final weights
                record_final_evaluation(result, self.runs_data[k])
        return results

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of every run; returns the trainer's per-example sums with a leading run axis."""
        cfg = self.configs[0]
        seeds = [config.train.seed for config in self.configs]
        orders = torch.stack([torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
                              for seed in seeds]).to(self.device)
        # The trainer reseeds the global generator here; each run draws from its own generator instead.
        noise_generators = [torch.Generator(device=self.device).manual_seed(epoch_seed(seed, epoch, 1))
                            for seed in seeds]
        n_samples = 1                                     # the β-ELBO's (the trainer's n_samples for "elbo")
        first_step = (epoch - 1) * self.per_epoch
        sums: dict[str, Any] = {}
        bounds = batch_bounds(self.n, cfg.train.batch_size)
        if not self.exact:   # the epoch's schedule factors, (steps, K, 1), sent to the device once
            factors = torch.tensor([[[schedule.value(first_step + index)] for schedule in self.schedules]
                                    for index in range(len(bounds))], dtype=torch.float32, device=self.device)
            monitors = StackedMonitorSums(self.monitors)
        for index, (start, stop) in enumerate(bounds):
            step = first_step + index
            if cfg.optim.lr_schedule == "cosine":
                self.optimizers.cosine_lr(step, self.per_epoch * cfg.train.epochs)
            rows = orders[:, start:stop]
            x = self.x[rows] if self.x.dim() == 2 else self.x[self.run_index, rows]          # (K, B, D)
            noise = torch.stack([torch.empty(n_samples, stop - start, self.latent_dim, device=self.device)
                                 .normal_(generator=generator) for generator in noise_generators])
            if self.exact:
                scale = torch.tensor([[schedule.value(step)] for schedule in self.schedules], dtype=torch.float32,
                                     device=self.device)
            else:
                scale = factors[index]
            loss, reconstruction, kl, kl_per_dim, loc, std = self.batched_terms(
                self.optimizers.stacked(), self.buffers, x, noise, self.eta_enc, self.betas * scale)
            self.optimizers.zero_grad()
            # The runs share no parameter, so the gradient of the sum is each run's own gradient.
            loss.sum().backward()
            if cfg.optim.grad_clip is not None:
                if self.exact:
                    self.optimizers.clip_run_by_run(cfg.optim.grad_clip)
                else:
                    self.optimizers.clip_at_once(cfg.optim.grad_clip)
            self.optimizers.step()
            accumulate_terms(sums, LossTerms(loss, reconstruction, kl, [kl_per_dim]), stop - start)
            if not self.exact:
                monitors.update(loc, std, kl_per_dim)
                continue
            for k, monitor in enumerate(self.monitors):
                if monitor is not None:
                    monitor.update_level("z", loc[k], std[k], kl_per_dim[k])
        if not self.exact:
            monitors.hand_over()
        return sums
