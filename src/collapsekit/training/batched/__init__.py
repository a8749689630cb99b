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
:class:`~collapsekit.training.batched.linear.StackedLinear`), are computed per run by the very calls a separate run makes.

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

The parts, one job each: :mod:`.eligibility` (which runs can be batched, the modes), :mod:`.linear` (the
linear layers that keep each run's rounding), :mod:`.explicit_noise` (a run's forward pass with its noise
given), :mod:`.optimizers` (the stacked optimiser groups), :mod:`.monitor_sums` (the fast mode's collapse
monitor sums) and :mod:`.program` (:func:`train_batched`: the program that trains and writes the runs).
"""

from collapsekit.training.batched.eligibility import BATCH_MODES, BATCHABLE_ARCHS, VARYING, can_batch, check_batch_mode
from collapsekit.training.batched.explicit_noise import ExplicitNoiseVAE
from collapsekit.training.batched.program import train_batched

#: The old private name of :class:`ExplicitNoiseVAE`.
_ExplicitNoiseVAE = ExplicitNoiseVAE

__all__ = ["BATCHABLE_ARCHS", "BATCH_MODES", "VARYING", "ExplicitNoiseVAE", "can_batch", "check_batch_mode",
           "train_batched"]
