"""One streamed pass over the data that every collapse metric reuses.

:func:`collect_posterior` (our models) and :func:`collect_from_encoder` (any encoder) run the
encoder once over the evaluation set, in batches, and keep per example and latent dimension:
the posterior mean and variance, one posterior sample, and the KL to the prior (nats). Every metric
in :mod:`~collapsekit.diagnostics.metrics` and :mod:`~collapsekit.diagnostics.mutual_info` works on
these arrays, so no metric runs the network again. Memory is O(N·d) per level, float64.

Which KL each level gets (the rule of :func:`collapsekit.objectives.level_kl_per_dimension`):

* the one level of a VAE/CVAE and the top of a hierarchy have prior N(0, η_enc² I): the analytic
  KL is exact (``kl_exact`` True). At the top of a hierarchy it is analytic given the sampled level
  below and averaged over ``n_samples`` draws of it: E_{q(z_{L−1}|·)} KL(q(z_L|z_{L−1}) ‖ p(z_L)).
* a level below the top has the conditional prior p(z_l | z_{l+1}), with z_{l+1} drawn from this
  level's sample. The analytic KL at the sampled z_{l+1} is biased; the paired estimate
  E[log q(z_l|·) − log p(z_l|z_{l+1})] = −H[q] − E log p(z_l|z_{l+1}) is averaged over ``n_samples``
  samples (``kl_exact`` False; single values can be negative).

For an upper level of a hierarchy the posterior q(z_l | z_{l−1}) depends on a sample of the level
below: its ``mean``, ``var`` and ``sample`` are those of q(z_l | z_{l−1}) at **one** sampled
z_{l−1} per example, as in Burda et al.'s active-unit code. Metrics of such a level (active units,
mutual information, variable types) therefore describe z_l given that sample: its mutual
information is I(z_{l−1}; z_l) over those samples, an upper bound on I(x; z_l).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent, Normal

from collapsekit.errors import DataError, ParameterError
from collapsekit._validation import positive
from collapsekit.diagnostics.gaussian import kl_to_prior
from collapsekit.models._checks import count
from collapsekit.models.likelihoods import IsotropicGaussian
from collapsekit.models.output import LatentLevel, ModelOutput
from collapsekit.objectives.terms import level_kl_per_dimension

#: What :func:`collect_from_encoder` accepts: ``encoder(x) -> (mu, log_var)`` or a diagonal Normal.
Encoder = Callable[[Tensor], object]


@dataclass
class LevelStats:
    """Per-example posterior statistics of one latent level (float64 arrays of shape (N, d)).

    Attributes
    ----------
    name : str
        ``"z"`` for a one-level model, ``"z1"``, ``"z2"``, ... from the bottom of a hierarchy.
    mean, var : ndarray
        Posterior mean and variance (not std) of each example. For an upper level of a hierarchy:
        of q(z_l | z_{l−1}) at one sampled z_{l−1} per example (module docstring).
    sample : ndarray
        One posterior sample per example, drawn from (mean, var) above.
    kl : ndarray
        Per example and dimension KL term to the prior, nats: analytic for a one-level model and
        the top of a hierarchy, the paired Monte Carlo estimate below the top.
    kl_exact : bool
        True when ``kl`` is analytic (given the sampled level below, at the top of a hierarchy).
    prior_std : float
        Std of the prior: η_enc at the top; the conditional prior's std p(z_l | z_{l+1}) below it.
    kl_samples : int
        Monte Carlo samples averaged in each ``kl`` value (0: closed form, no sampling at all).
    """

    name: str
    mean: np.ndarray
    var: np.ndarray
    sample: np.ndarray
    kl: np.ndarray
    kl_exact: bool
    prior_std: float
    kl_samples: int = 0

    def __post_init__(self) -> None:
        arrays = {key: getattr(self, key) for key in ("mean", "var", "sample", "kl")}
        shape = np.shape(arrays["mean"])
        if len(shape) != 2 or 0 in shape:
            raise DataError(f"level {self.name}: mean must be a non-empty (N, d) array, got shape {shape}")
        for key, value in arrays.items():
            value = np.asarray(value, dtype=np.float64)
            if value.shape != shape:
                raise DataError(f"level {self.name}: {key} has shape {value.shape}, expected {shape} like mean")
            if not np.isfinite(value).all():
                raise DataError(f"level {self.name}: {key} contains NaN or infinite values")
            setattr(self, key, value)
        if (self.var <= 0).any():
            raise DataError(f"level {self.name}: var must be > 0 everywhere (variances, not log-variances)")
        self.prior_std = positive("prior_std", self.prior_std)

    @property
    def n(self) -> int:
        """Number of examples N."""
        return int(self.mean.shape[0])

    @property
    def latent_dim(self) -> int:
        """Number of latent dimensions d."""
        return int(self.mean.shape[1])

    @property
    def prior_var(self) -> float:
        """prior_std², the scale the variance-based metrics divide by."""
        return self.prior_std**2


@dataclass
class PosteriorStats:
    """The result of one pass: one :class:`LevelStats` per latent level, bottom to top."""

    levels: list[LevelStats]
    n: int

    def level(self, name: str) -> LevelStats:
        """The level called ``name``."""
        for level in self.levels:
            if level.name == name:
                return level
        raise KeyError(f"no latent level {name!r}; levels: {[lv.name for lv in self.levels]}")


# -- shared helpers (also used by likelihood.py) ---------------------------------------------------
def as_rows(name: str, values: object) -> Tensor:
    """``values`` (tensor, ndarray or nested lists) as a finite 2-D tensor on its own device, not copied
    where possible; a :class:`DataError` names the problem."""
    if isinstance(values, Tensor):
        tensor = values.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(values))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{name}: cannot be read as a numeric array ({exc})") from None
    if not (tensor.is_floating_point() or tensor.dtype in (torch.bool, torch.uint8, torch.int8, torch.int16,
                                                          torch.int32, torch.int64)):
        raise DataError(f"{name}: expected numeric values, got dtype {tensor.dtype}")
    if tensor.dim() != 2 or 0 in tensor.shape:
        raise DataError(f"{name}: expected a non-empty 2-D array (examples × features), got shape "
                        f"{tuple(tensor.shape)}")
    if tensor.is_floating_point():
        bad = ~torch.isfinite(tensor).all(dim=1)
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0, 0])
            raise DataError(f"{name}: row {row} contains NaN or an infinite value")
    return tensor


def reference(*networks: object, data: Tensor | None = None,
              device: torch.device | str | None = None) -> tuple[torch.device, torch.dtype | None]:
    """Device and dtype of the first floating parameter or buffer among ``networks``; without one (plain
    functions, modules without parameters) ``device`` if given, else the device of ``data`` (CPU without
    data), and None: the data stay where they are, in their own floating dtype, and a plain function
    gets them there."""
    for network in networks:
        if isinstance(network, nn.Module):
            for tensor in (*network.parameters(), *network.buffers()):
                if tensor.is_floating_point():
                    return tensor.device, tensor.dtype
    if device is not None:
        return torch.device(device), None
    return (torch.device("cpu") if data is None else data.device), None


@contextlib.contextmanager
def placed(networks: Sequence[object], device: torch.device | str | None) -> Iterator[None]:
    """Every ``nn.Module`` among ``networks`` on ``device`` for the duration, then back where it was (its
    parameters stay the same objects: an optimiser holding them keeps working). ``None``: left alone."""
    moved: list[tuple[nn.Module, torch.device]] = []
    if device is not None:
        target = torch.device(device)
        for network in networks:
            home, dtype = reference(network)
            if isinstance(network, nn.Module) and dtype is not None and home != target:
                moved.append((network, home))
                network.to(target)
    try:
        yield
    finally:
        for network, home in moved:
            network.to(home)


#: Dtypes a diagnostic never computes a density, a KL or a sum in: they are promoted to float32.
HALF = (torch.float16, torch.bfloat16)


def at_least_float32(tensor: Tensor) -> Tensor:
    """``tensor`` in float32 when it is float16 or bfloat16 (a cast on its device); unchanged otherwise."""
    return tensor.float() if tensor.dtype in HALF else tensor


def promoted_distribution(distribution: object) -> object:
    """A model's likelihood with half-precision parameters promoted to float32, for the families our
    models return (isotropic Gaussian, Independent Normal or Bernoulli); anything else as it is."""
    if isinstance(distribution, IsotropicGaussian):
        return IsotropicGaussian(at_least_float32(distribution.loc), at_least_float32(distribution.scale))
    if isinstance(distribution, Independent):
        base = distribution.base_dist
        if type(base) is Normal:
            base = Normal(at_least_float32(base.loc), at_least_float32(base.scale), validate_args=False)
        elif isinstance(base, Bernoulli):
            base = Bernoulli(logits=at_least_float32(base.logits), validate_args=False)
        else:
            return distribution
        return Independent(base, distribution.reinterpreted_batch_ndims, validate_args=False)
    return distribution


def promoted_output(output: ModelOutput) -> ModelOutput:
    """A forward pass of a bfloat16 or float16 model with its tensors in float32, so that the KLs and
    log-densities every diagnostic reads are computed and summed in float32 (an epoch of float16 KL
    overflows, bfloat16 keeps three digits). A float32 or float64 pass is returned as it is."""
    if output.target.dtype not in HALF and all(level.sample.dtype not in HALF for level in output.levels):
        return output
    normal = lambda d: Normal(at_least_float32(d.loc), at_least_float32(d.scale), validate_args=False)  # noqa: E731
    levels = [LatentLevel(name=level.name, posterior=normal(level.posterior), prior=normal(level.prior),
                          sample=at_least_float32(level.sample)) for level in output.levels]
    return ModelOutput(target=at_least_float32(output.target), likelihood=promoted_distribution(output.likelihood),
                       levels=levels)


def to_device(rows: Tensor, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    """A batch for the network: its device and dtype (integers become the default float dtype)."""
    if dtype is None:
        dtype = rows.dtype if rows.is_floating_point() else torch.get_default_dtype()
    return rows.to(device, dtype)


@contextlib.contextmanager
def evaluation(modules: Sequence[object], seed: int, device: torch.device) -> Iterator[None]:
    """eval mode for every ``nn.Module`` in ``modules``, no gradients and a seeded RNG; each submodule's
    training flag and the global RNG state (CPU, and ``device`` when it is a GPU) are restored on exit."""
    networks = [m for m in modules if isinstance(m, nn.Module)]
    flags = [(m, m.training) for network in networks for m in network.modules()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(int(seed))
            for network in networks:
                network.eval()
            yield
    finally:
        for m, flag in flags:
            m.training = flag


def gaussian_parameters(name: str, encoded: object, rows: int, start: int = 0) -> tuple[Tensor, Tensor]:
    """(mean, var) of an encoder's output ``(mu, log_var)`` or diagonal Normal for ``rows`` examples.

    Raises :class:`ParameterError` (one line, naming ``name``) for anything else, a shape that is not
    (rows, d), or non-finite values (``start`` is the first row of the batch, for the message).
    """
    if isinstance(encoded, Independent) and isinstance(encoded.base_dist, Normal):
        encoded = encoded.base_dist
    if isinstance(encoded, Normal):
        mean, var = encoded.loc, at_least_float32(encoded.scale)**2
    elif isinstance(encoded, (tuple, list)) and len(encoded) == 2:
        parts = []
        for label, value in zip(("mu", "log_var"), encoded):
            if isinstance(value, np.ndarray):
                value = torch.as_tensor(value)
            if not isinstance(value, Tensor):
                raise ParameterError(f"{name} returned {label} of type {type(value).__name__}; expected a tensor")
            parts.append(value)
        mean, log_var = parts
        if mean.shape != log_var.shape:
            raise ParameterError(f"{name} returned mu {tuple(mean.shape)} and log_var {tuple(log_var.shape)}; "
                                 "expected the same shape (batch, d)")
        var = torch.exp(at_least_float32(log_var))             # exp of a float16 log-variance > 11 is inf
    else:
        raise ParameterError(f"{name} must return (mu, log_var) or a torch.distributions.Normal, got "
                             f"{type(encoded).__name__}" + (f" of length {len(encoded)}"
                                                            if isinstance(encoded, (tuple, list)) else ""))
    mean, var = at_least_float32(mean), at_least_float32(var)       # a half-precision encoder's, in float32
    if mean.dim() != 2 or mean.shape[0] != rows:
        raise ParameterError(f"{name} returned a posterior of shape {tuple(mean.shape)} for {rows} examples; "
                             f"expected ({rows}, d)")
    if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(var).all()) and bool((var > 0).all())):
        raise ParameterError(f"{name} returned NaN, infinite or zero-variance values for examples "
                             f"{start}..{start + rows - 1}")
    return mean, var


class _Buffer:
    """Per-level (N, d) float64 arrays, allocated when the first batch reveals d."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, key: str, rows: slice, values: Tensor) -> None:
        if key not in self.arrays:
            self.arrays[key] = np.empty((self.n, values.shape[-1]), dtype=np.float64)
        self.arrays[key][rows] = values.detach().to("cpu", torch.float64).numpy()


# -- the pass ----------------------------------------------------------------------------------------
def collect_posterior(model: nn.Module, x: object, y: object | None = None, *, batch_size: int = 1024,
                      n_samples: int = 8, seed: int = 0, device: torch.device | str | None = None,
                      on_batch: Callable[[int, int], None] | None = None) -> PosteriorStats:
    """Posterior statistics of every latent level of one of our models (VAE, CVAE, hierarchy).

    Parameters
    ----------
    model : nn.Module
        ``model(x, y, n_samples=S) -> ModelOutput`` (:mod:`collapsekit.models`).
    x, y : tensor or array
        (N, D) inputs; y the CVAE's outputs (None otherwise).
    batch_size : int
        Examples per forward pass.
    n_samples : int
        Samples averaged in the Monte Carlo KL of a hierarchy's levels (module docstring). A
        one-level model needs none: its KL is analytic, and it is run with one sample.
    seed : int
        Seeds the posterior samples; the global RNG state is restored afterwards.
    on_batch : callable, optional
        ``on_batch(done, total)`` after each batch of examples (for a progress bar).
    device : torch.device or str, optional
        Where the model runs: it is moved there for the pass and back afterwards. ``None``: where its
        parameters are. Each batch of x (and y) goes to the model's device and dtype; the statistics
        are computed there (in float32 at least: a half-precision model's pass is promoted) and copied
        to the CPU in float64, batch by batch.

    Returns
    -------
    PosteriorStats
        Levels bottom to top. The model runs in eval mode without gradients; every module's
        training flag is restored.
    """
    xs = as_rows("x", x)
    ys = None if y is None else as_rows("y", y)
    if ys is not None and ys.shape[0] != xs.shape[0]:
        raise DataError(f"x has {xs.shape[0]} rows but y has {ys.shape[0]}")
    batch_size = count("batch_size", batch_size)
    samples = count("n_samples", n_samples)
    if len(getattr(model, "latent_dims", (0, 0))) == 1:
        samples = 1                                  # analytic KL: extra samples would only cost time
    n = int(xs.shape[0])
    buffers: list[_Buffer] = []
    meta: list[tuple[str, float, bool]] = []
    with placed([model], device):
        device, dtype = reference(model, data=xs, device=device)
        with evaluation([model], seed, device):
            for start in range(0, n, batch_size):
                rows = slice(start, min(n, start + batch_size))
                xb = to_device(xs[rows], device, dtype)
                yb = None if ys is None else to_device(ys[rows], device, dtype)
                output = promoted_output(model(xb, yb, n_samples=samples))
                kls = level_kl_per_dimension(output)
                if not buffers:
                    buffers = [_Buffer(n) for _ in output.levels]
                    top = len(output.levels) - 1
                    meta = [(level.name, float(level.prior.scale.mean()), index == top)
                            for index, level in enumerate(output.levels)]
                for buffer, level, kl in zip(buffers, output.levels, kls):
                    loc, scale = level.posterior.loc, level.posterior.scale
                    if loc.dim() == 3:               # q(z_l | z_{l−1}): keep the first sampled z_{l−1}
                        loc, scale = loc[0], scale[0]
                    loc, scale = loc.expand(rows.stop - start, -1), scale.expand(rows.stop - start, -1)
                    buffer.put("mean", rows, loc)
                    buffer.put("var", rows, scale.double() ** 2)
                    buffer.put("sample", rows, level.sample[0])
                    buffer.put("kl", rows, kl.double().mean(dim=0))
                if on_batch is not None:
                    on_batch(rows.stop, n)
    levels = []
    for buffer, (name, prior_std, exact) in zip(buffers, meta):
        stats = buffer.arrays
        kl_samples = 0 if exact and len(buffers) == 1 else samples
        levels.append(LevelStats(name=name, mean=stats["mean"], var=stats["var"], sample=stats["sample"],
                                 kl=stats["kl"], kl_exact=exact, prior_std=prior_std, kl_samples=kl_samples))
    return PosteriorStats(levels=levels, n=n)


def collect_from_encoder(encoder: Encoder, x: object, *, eta_enc: float = 1.0, batch_size: int = 1024,
                         seed: int = 0, device: torch.device | str | None = None) -> PosteriorStats:
    """Posterior statistics of any Gaussian encoder, against the prior N(0, η_enc² I).

    Parameters
    ----------
    encoder : callable
        ``encoder(x_batch)`` returning ``(mu, log_var)`` (each (B, d); log of the variance) or a
        ``torch.distributions.Normal`` with loc/scale (B, d) (``Independent(Normal, 1)`` too). An
        ``nn.Module`` runs in eval mode; x is moved to its device and dtype. A plain function gets x
        where x is (a tensor on a GPU stays there; an array is a CPU tensor), in its own dtype.
    x : tensor or array
        (N, D) inputs.
    eta_enc : float
        Prior std η_enc.
    batch_size : int
        Examples per encoder call.
    seed : int
        Seeds the one posterior sample per example; the global RNG state is restored.
    device : torch.device or str, optional
        Where the encoder runs: an ``nn.Module`` is moved there for the pass and back afterwards, and
        the batches of x go there (for a plain function too). ``None``: the module's device, or for a
        plain function the device of x.

    Returns
    -------
    PosteriorStats
        One level ``"z"`` with the exact analytic KL.

    Raises
    ------
    ParameterError
        When the encoder returns anything but the above, a wrong shape, or NaN/inf values.
    """
    if not callable(encoder):
        raise ParameterError(f"encoder must be callable (x -> (mu, log_var) or Normal), got {type(encoder).__name__}")
    eta_enc = positive("eta_enc", eta_enc)
    xs = as_rows("x", x)
    batch_size = count("batch_size", batch_size)
    n = int(xs.shape[0])
    buffer = _Buffer(n)
    with placed([encoder], device):
        device, dtype = reference(encoder, data=xs, device=device)
        with evaluation([encoder], seed, device):
            for start in range(0, n, batch_size):
                rows = slice(start, min(n, start + batch_size))
                encoded = encoder(to_device(xs[rows], device, dtype))
                mean, var = gaussian_parameters("encoder", encoded, rows.stop - start, start)
                buffer.put("mean", rows, mean)
                buffer.put("var", rows, var)
                buffer.put("sample", rows, mean + var.sqrt() * torch.randn_like(mean))
                buffer.put("kl", rows, kl_to_prior(mean.double(), var.double(), 0.0, eta_enc**2))
    stats = buffer.arrays
    level = LevelStats(name="z", mean=stats["mean"], var=stats["var"], sample=stats["sample"], kl=stats["kl"],
                       kl_exact=True, prior_std=eta_enc, kl_samples=0)
    return PosteriorStats(levels=[level], n=n)

