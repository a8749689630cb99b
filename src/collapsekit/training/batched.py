"""Batched training: K runs of a sweep grid trained as one program, with the results of K separate runs.

A training step of a small model (the theory's linear VAE, a small MLP) is a few small matrix
products and about a hundred framework calls, so K separate runs spend most of their time in
per-call overhead. Stacking the K models' parameters along a new leading dimension and running one
vectorised (``torch.func.vmap``) forward and backward pass does the same arithmetic in K-times
larger kernels for about the overhead of one run.

Slice k of the program reproduces ``Trainer(configs[k], run_dirs[k]).fit()``:

- initial weights: the model built right after ``torch.manual_seed(seed)``, as the trainer builds it;
- data order: each epoch, the trainer's seeded permutation (``epoch_seed(seed, epoch)``) for the
  slice's own seed, cut by the trainer's ``batch_bounds``;
- sampling noise: the trainer reseeds the global generator with ``epoch_seed(seed, epoch, 1)`` at each
  epoch start and ``Normal.rsample`` draws one standard normal tensor (S, B, d) per batch; here each
  slice has its own generator with that seed, drawn in the same order, and z = μ + noise·σ exactly
  as ``rsample`` computes it;
- loss: the terms of :class:`~collapsekit.objectives.BetaELBO` (free bits included), weighted by the
  slice's β and schedule factor as ``BetaELBO`` weights them;
- optimiser: Adam and SGD update every element independently, so one optimiser over stacked
  parameters is K optimisers; runs with different optimiser settings (lr, weight decay, momentum)
  get one optimiser per setting, over their own rows of the stack;
- run directory: ``config.yaml``, ``metrics.jsonl`` and per-epoch checkpoints written by the
  trainer's own helpers, so every later tool reads a batched run like any other and
  ``Trainer(..., resume=True)`` can continue one.

The numbers are bit for bit those of the separate runs (tests/test_batched.py compares weights
and every metric with ``torch.equal``): everything elementwise is computed on the stack by the
same kernels; the matrix products, whose rounding depends on how they are batched (see
:class:`_StackedLinear`), are computed per run by the very calls a separate run makes.

Two modes (``train_batched(..., mode=...)``, ``collapsekit sweep --batch-mode``):

- ``exact`` (the default): as above, bit for bit the separate runs, on the CPU; on CUDA too as far as
  the separate runs are themselves reproducible there (deterministic algorithms, which the program
  switches on, and ``CUBLAS_WORKSPACE_CONFIG``, which it sets: :func:`deterministic_algorithms`). It
  still makes K calls per linear layer and step (3K with the backward pass), K per-run monitor
  updates and, with gradient clipping, K norms per parameter: on a GPU these small kernels dominate.
- ``fast``: one program over the stacked weights. Each linear layer is one batched product for all
  runs (``vmap``'s rule for ``F.linear``: ``bmm``/``baddbmm``, in both passes), the collapse monitors'
  per-batch sums are kept for all runs at once (each run's monitor gets them at the epoch's end,
  :meth:`~collapsekit.training.monitor.CollapseMonitor.add_sums`), gradient clipping takes every run's
  norm in one reduction per parameter, and the schedule's factors are sent to the device once per
  epoch. The data order and the sampling noise are the separate runs' (each run's own generator, one
  draw per run and step), so only rounding differs: a product rounds differently batched than alone.
  It is not bit for bit the exact mode (on the CPU small products often do round alike, and then it
  is); tests/test_batched.py checks, on grids with 6 and 784 features, that after a few epochs the
  weights agree within 1e-4 (absolute, on weights of order 0.1–1), every metric within 1e-4 relative
  and the active and collapsed dimensions exactly; bench/bench_batched.py measures the speed-up and
  the agreement on MNIST. Rounding differences grow over a run as any two float32 trainings' do, and
  faster in a run whose training amplifies them: after two epochs of 16 MLPs on mnist10k, 15 runs were
  within 6e-6 of the exact weights and one (β = 0.1, the least regularised) within 1e-2 on single
  weights (median 7e-6), every metric within 6.4e-4 relative. Use ``exact`` where a result must equal
  a separate run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from collapsekit.errors import ParameterError
from collapsekit.models._latent import centred_prior, check_output, posterior
from collapsekit.models.output import LatentLevel, ModelOutput
from collapsekit.models.vae import VAE
from collapsekit.objectives.elbo import BetaELBO
from collapsekit.objectives.terms import LossTerms
from collapsekit.training.config import RunConfig, TrainConfig
from collapsekit.training.evaluation import record_final_evaluation
from collapsekit.training.monitor import CollapseMonitor
from collapsekit.training.trainer import (METRICS_FILE, RunResult, Trainer, TrainingData, accumulate_terms,
                                          batch_bounds, build_model_from_config, build_objective_from_config,
                                          build_optimizer, deterministic_algorithms, diverged_message, epoch_seed,
                                          load_training_data)

#: Architectures whose runs are small enough to gain from batching and whose forward pass is reproduced here.
BATCHABLE_ARCHS: tuple[str, ...] = ("linear", "mlp")

#: How a batched program trains (module docstring): ``exact`` (bit for bit separate runs) or ``fast``.
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


# -- the forward pass with explicit noise and separate runs' arithmetic ---------------------------------
def _save_linear_inputs(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    """``setup_context`` of both linear functions below: what their backward passes need."""
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


class _StackedLinear(torch.autograd.Function):
    """K runs' ``F.linear`` at once, (K, ..., in) → (K, ..., out), each run rounded as a separate run.

    A batched product (``bmm``, or vmap's own rule for ``F.linear``: a matmul, then an add) does
    not round as one run's ``F.linear`` does: ``F.linear`` adds a bias inside ``addmm``, between the
    blocks of the inner dimension; the backward pass of ``mm`` computes the weight gradient as
    gradᵀ·x where ``bmm``'s computes (xᵀ·grad)ᵀ; and the BLAS kernels behind ``bmm`` take other
    paths than ``mm`` when a run's block of the output is not aligned in memory (a latent size or
    width not a multiple of 4). So each run's product here is the very call a separate run makes
    (``F.linear`` forward; ``mm`` in the orientations of its backward for a row-major input), on
    that run's slice: bit for bit a separate run's numbers (tests/test_batched.py). The K calls cost
    a few microseconds each; the elementwise work of the step is still done once for all runs.
    """

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return torch.stack([F.linear(x[k], weight[k], None if bias is None else bias[k])
                            for k in range(len(weight))])

    setup_context = staticmethod(_save_linear_inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        per_run = [_linear_grads(x[k], weight[k], grad[k], ctx.needs_input_grad, ctx.has_bias)
                   for k in range(len(weight))]
        return tuple(None if grads[0] is None else torch.stack(grads)
                     for grads in zip(*per_run))


def _linear_grads(x: Tensor, weight: Tensor, grad: Tensor, needs: tuple[bool, ...],
                  has_bias: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The gradients autograd computes for one run's ``F.linear(x, weight, bias)``, row-major x.

    ``F.linear`` folds the leading dimensions of x into rows and multiplies by weightᵀ with
    ``mm``/``addmm``, whose backward pass computes grad·weight, gradᵀ·rows and the column sums of grad.
    """
    rows, grads = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
    return (grads.mm(weight).reshape(x.shape) if needs[0] else None,
            grads.t().mm(rows) if needs[1] else None,
            grads.sum(0) if has_bias and needs[2] else None)


class _RunLinearFunction(torch.autograd.Function):
    """One run's ``F.linear`` whose batching rule (``vmap``) is :class:`_StackedLinear`."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    setup_context = staticmethod(_save_linear_inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # Used only outside vmap; under vmap, _StackedLinear's backward runs.
        x, weight = ctx.saved_tensors
        return _linear_grads(x, weight, grad, ctx.needs_input_grad, ctx.has_bias)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], x: Tensor, weight: Tensor,
             bias: Tensor | None) -> tuple[Tensor, int]:
        size = info.batch_size

        def runs_first(tensor: Tensor | None, dim: int | None) -> Tensor | None:
            if tensor is None:
                return None
            return tensor.movedim(dim, 0) if dim is not None else tensor.expand(size, *tensor.shape)

        x_runs, weight_runs, bias_runs = (runs_first(t, d) for t, d in zip((x, weight, bias), in_dims))
        return _StackedLinear.apply(x_runs, weight_runs, bias_runs), 0


class _RunLinear(nn.Linear):
    """``nn.Linear`` through :class:`_RunLinearFunction`: the template's linear layers, same parameter names."""

    def forward(self, x: Tensor) -> Tensor:
        return _RunLinearFunction.apply(x, self.weight, self.bias)


def _template(wrapper: nn.Module, exact: bool = True) -> nn.Module:
    """A parameter-free copy of one run's module (meta tensors); with ``exact`` every nn.Linear is made a
    _RunLinear (each run's product by a separate run's call), else left to ``vmap``'s batched products."""
    template = copy.deepcopy(wrapper).to("meta")
    if not exact:
        return template
    for name, module in list(template.named_modules()):
        if type(module) is nn.Linear:                        # a subclass may compute something else
            parent, _, child = name.rpartition(".")
            setattr(template.get_submodule(parent), child,
                    _RunLinear(module.in_features, module.out_features, bias=module.bias is not None,
                               device="meta"))
    return template


class _ExplicitNoiseVAE(nn.Module):
    """``VAE.forward`` with the sampling noise and η_enc as arguments.

    ``VAE.forward`` draws its noise from the global generator and reads η_enc from a float attribute;
    under ``vmap`` neither can differ between runs. This module calls the VAE's own encoder, decoder
    and likelihood and takes both as inputs (tests/test_batched.py checks it against ``VAE.forward``).
    """

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, noise: Tensor, eta_enc: Tensor) -> ModelOutput:
        vae = self.vae
        q = posterior(vae.encoder(x), vae.latent_dim, "z")
        z = q.loc + noise * q.scale                       # Normal.rsample, with the noise given
        mean = vae.decoder(z)
        check_output(mean, x)
        # eta_enc is one run's 0-d tensor: centred_prior only adds it to zeros
        prior = centred_prior(vae.latent_dim, eta_enc, z)  # type: ignore[arg-type]
        level = LatentLevel(name="z", posterior=q, prior=prior, sample=z)
        return ModelOutput(target=x, likelihood=vae.likelihood(mean), levels=[level])


# -- the program ---------------------------------------------------------------------------------------
class _OneProcess:
    """What the trainer's run-directory helpers use of Fabric, for a single process."""

    global_rank = 0
    world_size = 1

    @staticmethod
    def all_reduce(value: Tensor, reduce_op: str = "sum") -> Tensor:
        return value


@dataclass
class _OptimizerGroup:
    """Consecutive runs with the same optimiser settings: their rows of every stacked parameter."""

    rows: range
    config: RunConfig
    leaves: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer


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
        (module docstring).

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
    keys = [_optimizer_key(config) for config in configs]
    order = sorted(range(len(configs)), key=lambda k: keys.index(keys[k]))
    # The trainer's setting: the same kernels as a separate run, for this program only.
    with deterministic_algorithms(_device(configs[0].train)):
        results = _Program([configs[k] for k in order], [dirs[k] for k in order], data, mode).fit()
    by_caller: list[RunResult | None] = [None] * len(configs)
    for position, k in enumerate(order):
        by_caller[k] = results[position]
    return [result for result in by_caller if result is not None]


def _optimizer_key(config: RunConfig) -> tuple[float, float, float]:
    o = config.optim
    return (o.lr, o.weight_decay, o.momentum)


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
        self.wrappers = [_ExplicitNoiseVAE(vae) for vae in self.models]
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
        self.names = list(params)
        self.groups = self._optimizer_groups(params)
        # The template only lends its code: every tensor comes from the stacks at call time.
        self.template = _template(self.wrappers[0], exact=self.exact)
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
                monitor = trainer._monitor(_OneProcess(), run_data, self.per_epoch, 0)
                if monitor is not None:
                    moments[id(run_data)] = monitor.moments
            self.monitors.append(monitor)
        self.run_optimizers = [build_optimizer(config, list(model.parameters()))
                               for config, model in zip(configs, self.models)]

    def _optimizer_groups(self, params: dict[str, Tensor]) -> list[_OptimizerGroup]:
        groups: list[_OptimizerGroup] = []
        start = 0
        while start < self.k:
            stop = start + 1
            while stop < self.k and _optimizer_key(self.configs[stop]) == _optimizer_key(self.configs[start]):
                stop += 1
            leaves = {name: nn.Parameter(p[start:stop].detach().clone()) for name, p in params.items()}
            # The trainer's own optimiser factory; parameters in model.parameters() order, so that
            # a run's slice of this optimiser's state is that run's optimiser state.
            optimizer = build_optimizer(self.configs[start], list(leaves.values()))
            groups.append(_OptimizerGroup(range(start, stop), self.configs[start], leaves, optimizer))
            start = stop
        return groups

    def _stacked(self) -> dict[str, Tensor]:
        """Every parameter stacked over the K runs (the groups' leaves, joined when there are several)."""
        if len(self.groups) == 1:
            return dict(self.groups[0].leaves)
        return {name: torch.cat([group.leaves[name] for group in self.groups]) for name in self.names}

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
            trainer._prepare_run_dir(_OneProcess())                # refuses a directory holding a run
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
                record = self.trainers[k]._epoch_record(_OneProcess(), run_sums, epoch, step, seconds,
                                                        schedule.controls, schedule.value(step - 1))
                if not math.isfinite(record["loss"]):
                    diverged[k] = diverged_message(self.run_dirs[k], epoch, record["loss"])
                    continue
                monitor = self.monitors[k]
                if monitor is not None:
                    monitor.end_epoch(step=step, epoch=epoch)
                    record |= monitor.epoch_metrics()
                history[k].append(record)
                self._copy_out(k)
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
            monitors = _StackedMonitorSums(self.monitors)
        for index, (start, stop) in enumerate(bounds):
            step = first_step + index
            if cfg.optim.lr_schedule == "cosine":
                total = self.per_epoch * cfg.train.epochs
                for group in self.groups:
                    for param_group in group.optimizer.param_groups:   # the trainer's expression, term for term
                        param_group["lr"] = group.config.optim.lr * 0.5 * (1 + math.cos(math.pi * step / total))
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
                self._stacked(), self.buffers, x, noise, self.eta_enc, self.betas * scale)
            for group in self.groups:
                group.optimizer.zero_grad(set_to_none=True)
            # The runs share no parameter, so the gradient of the sum is each run's own gradient.
            loss.sum().backward()
            if cfg.optim.grad_clip is not None:
                if self.exact:
                    self._clip_gradients(cfg.optim.grad_clip)
                else:
                    self._clip_gradients_at_once(cfg.optim.grad_clip)
            for group in self.groups:
                group.optimizer.step()
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

    def _clip_gradients(self, max_norm: float) -> None:
        """``torch.nn.utils.clip_grad_norm_`` (what Fabric calls), run by run: the norm of the per-tensor
        norms, then one factor on every gradient of the run."""
        for group in self.groups:
            grads = [leaf.grad for leaf in group.leaves.values() if leaf.grad is not None]
            for row in range(len(group.rows)):
                total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g[row], 2.0) for g in grads]),
                                                 2.0)
                factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
                for g in grads:
                    g[row].mul_(factor)

    def _clip_gradients_at_once(self, max_norm: float) -> None:
        """The fast mode's clipping: ``clip_grad_norm_``'s arithmetic for every run of a group at once (one
        norm per parameter over its rows, one factor per run), rounded as batched reductions round."""
        for group in self.groups:
            grads = [leaf.grad for leaf in group.leaves.values() if leaf.grad is not None]
            if not grads:
                continue
            norms = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), 2.0, dim=1) for g in grads])
            factor = torch.clamp(max_norm / (torch.linalg.vector_norm(norms, 2.0, dim=0) + 1e-6), max=1.0)
            for g in grads:
                g.mul_(factor.reshape(-1, *([1] * (g.dim() - 1))))

    def _copy_out(self, k: int) -> None:
        """Run k's weights into its own model and its optimiser state into its own optimiser."""
        group = next(group for group in self.groups if k in group.rows)
        local = k - group.rows.start
        with torch.no_grad():
            for name, parameter in self.wrappers[k].named_parameters():
                parameter.copy_(group.leaves[name][local])
        stacked = group.optimizer.state_dict()
        shapes = [leaf.shape for leaf in group.leaves.values()]
        # Element-wise state (moments, momentum) has the stacked shape and is sliced; scalars (step) are shared.
        state = {index: {key: _run_state(value, shapes[index], local) for key, value in values.items()}
                 for index, values in stacked["state"].items()}
        self.run_optimizers[k].load_state_dict({"state": state, "param_groups": stacked["param_groups"]})


class _StackedMonitorSums:
    """The fast mode's collapse-monitor sums: what each run's :meth:`CollapseMonitor.update_level` adds per
    batch (Σ KL, Σ μ and Σ μ² around the epoch's first batch mean, in float32, and the largest batch
    for the MI estimate), for every run at once; :meth:`hand_over` gives each run's monitor its sums."""

    def __init__(self, monitors: Sequence[Any]) -> None:
        self.monitors = list(monitors)
        self.active = any(monitor is not None for monitor in self.monitors)
        self.count = 0
        self.kl: Tensor | None = None
        self.reservoir: tuple[Tensor, Tensor] | None = None

    @torch.no_grad()
    def update(self, loc: Tensor, std: Tensor, kl_per_dim: Tensor) -> None:
        """One step: ``loc`` and ``std`` (K, B, d), ``kl_per_dim`` (K, d) the batch-mean KL."""
        if not self.active:
            return
        loc, std = loc.detach().float(), std.detach().float()
        batch = loc.shape[1]
        if self.kl is None:
            self.shift = loc.mean(1, keepdim=True)
            self.kl = torch.zeros_like(kl_per_dim, dtype=torch.float32)
            self.s1 = torch.zeros_like(self.kl)
            self.s2 = torch.zeros_like(self.kl)
        centred = loc - self.shift
        self.kl += kl_per_dim.detach().float() * batch
        self.s1 += centred.sum(1)
        self.s2 += (centred * centred).sum(1)
        self.count += batch
        if self.reservoir is None or batch >= self.reservoir[0].shape[1]:    # the largest (newest) batch
            self.reservoir = (loc, std * std)

    def hand_over(self) -> None:
        if self.kl is None or self.reservoir is None:
            return
        n = float(self.count)
        shift, s1, s2 = self.shift[:, 0].double(), self.s1.double(), self.s2.double()
        mean, square = s1 + n * shift, s2 + 2 * shift * s1 + n * shift * shift          # unshifted, float64
        for k, monitor in enumerate(self.monitors):
            if monitor is not None:
                monitor.add_sums("z", kl=self.kl[k], mean=mean[k], square=square[k], count=self.count,
                                 reservoir=(self.reservoir[0][k], self.reservoir[1][k]))


def _run_state(value: Any, stacked_shape: torch.Size, row: int) -> Any:
    """One run's copy of an optimiser state entry: element-wise state (moments, momentum) has the
    stacked parameter's shape and is sliced; the rest (the step count) is shared by the group."""
    if not isinstance(value, Tensor):
        return value
    return (value[row] if value.shape == stacked_shape else value).clone()
