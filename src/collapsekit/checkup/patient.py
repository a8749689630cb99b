"""The model as the doctor sees it: the working copy, its adapter, the data, and which parameters are whose.

The encoder's and decoder's parameters are found by watching which modules run during
``adapter.posterior(x)`` and during ``adapter.decode(z)``; the decoder's *entry* is the first module
that receives z itself, so that a hook there sees the z the user's own ``loss_fn`` decodes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal, kl_divergence

from collapsekit.adapters import ModelAdapter, likelihood_target
from collapsekit.checkup.state import reseed
from collapsekit.errors import DataError, ParameterError


@dataclass
class Patient:
    """Everything a check needs.

    Attributes
    ----------
    model : object
        The working copy of the user's model (what ``loss_fn`` is called with).
    adapter : ModelAdapter
        The working copy's adapter.
    optimizer : torch.optim.Optimizer or None
        The working copy of the user's optimiser (over the copy's parameters).
    loss_fn : callable or None
        ``loss_fn(model, batch) -> scalar tensor``, the user's.
    batch : object
        The first batch, as the user's data yields it (what ``loss_fn`` gets).
    x : Tensor
        The encoder inputs of up to ``examples`` examples, on the model's device.
    device : torch.device
    seed : int
    encoder_params, decoder_params : list of (str, Parameter)
        Parameters of the modules that run in ``posterior`` only / in ``decode`` only.
    entry : (nn.Module, int) or None
        The decoder's entry module and the position of z among its arguments.
    """

    model: Any
    adapter: ModelAdapter
    optimizer: Any
    loss_fn: Callable[[Any, Any], Tensor] | None
    batch: Any
    x: Tensor
    device: torch.device
    seed: int
    encoder_params: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    decoder_params: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    entry: tuple[nn.Module, int] | None = None

    # -- the model's pieces ------------------------------------------------------------------------
    def networks(self) -> list[nn.Module]:
        """Every ``nn.Module`` reachable from the adapter and the model object, without repeats."""
        roots: list[Any] = list(self.adapter.modules())
        roots += [self.model] if isinstance(self.model, nn.Module) else \
            [m for m in self.model if isinstance(m, nn.Module)] if isinstance(self.model, (tuple, list)) else []
        seen: dict[int, nn.Module] = {}
        for root in roots:
            for module in root.modules():
                seen.setdefault(id(module), module)
        return list(seen.values())

    def target(self, x: Tensor) -> Tensor:
        return likelihood_target(self.adapter, x)

    def chunks(self, size: int = 256) -> Iterator[Tensor]:
        for start in range(0, self.x.shape[0], size):
            yield self.x[start:start + size]

    @property
    def batch_x(self) -> Tensor:
        """The encoder inputs of the first batch (what ``loss_fn`` sees), on the model's device."""
        return as_device(self.adapter.inputs(self.batch), self.device)

    def reseed(self) -> None:
        reseed(self.seed, self.device)

    # -- measurements through the adapter ----------------------------------------------------------
    def posterior(self, x: Tensor) -> Normal:
        return self.adapter.posterior(x)

    def kl_to_prior(self, q: Normal) -> Tensor:
        """KL(q ‖ N(0, η_enc²)) per example and latent element, (B, *latent_shape)."""
        prior = Normal(torch.zeros_like(q.loc), torch.full_like(q.loc, self.adapter.prior_std))
        return kl_divergence(q, prior)

    def log_likelihood(self, z: Tensor, target: Tensor) -> Tensor:
        """log p(target | z) per row of z, (M,): z is (M, *latent_shape), sample-major over target's rows."""
        dist = self.decode(z)
        k = z.shape[0] // target.shape[0]
        rows = target.repeat(k, *([1] * (target.dim() - 1))) if k > 1 else target
        lp = dist.log_prob(rows)
        return lp.reshape(lp.shape[0], -1).sum(1) if lp.dim() > 1 else lp

    def decode(self, z: Tensor) -> Distribution:
        dist = self.adapter.decode(z)
        if dist is None:
            raise ParameterError(f"{self.adapter.name} has no likelihood (decode returned None)")
        return dist

    def has_likelihood(self) -> bool:
        with torch.no_grad():
            q = self.posterior(self.x[:2])
            return self.adapter.decode(q.loc) is not None

    # -- watching the model -------------------------------------------------------------------------
    def dissect(self) -> None:
        """Find the encoder's and decoder's parameters and the decoder's entry (see the module docstring)."""
        modules = self.networks()
        names = {}
        for root in modules:
            for name, p in root.named_parameters():
                names.setdefault(id(p), name)
        with torch.no_grad():              # a first call may set an adapter up (a likelihood's scale fitted
            self.posterior(self.x[:256])   # by decoding): what runs then is not the encoder
        x = self.x[: min(8, self.x.shape[0])]
        with torch.no_grad(), _recording(modules) as ran:
            q = self.posterior(x)
        enc = list(ran.values())
        z = q.loc.detach().clone()
        entry: list[tuple[nn.Module, int]] = []

        def find(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not entry:
                for i, arg in enumerate(args):
                    if arg is z or (isinstance(arg, Tensor) and arg.shape == z.shape and torch.equal(arg, z)):
                        entry.append((module, i))
                        return

        hooks = [m.register_forward_pre_hook(find) for m in modules]
        try:
            with torch.no_grad(), _recording(modules) as ran_dec:
                self.adapter.decode(z)
        finally:
            for hook in hooks:
                hook.remove()
        dec = list(ran_dec.values())
        enc_ids, dec_ids = {id(m) for m in enc}, {id(m) for m in dec}

        def params(group: list[nn.Module], other: set[int]) -> list[tuple[str, nn.Parameter]]:
            found: dict[int, tuple[str, nn.Parameter]] = {}
            for module in group:
                if id(module) in other:
                    continue
                for p in module.parameters(recurse=False):
                    if p.requires_grad:
                        found.setdefault(id(p), (names.get(id(p), "?"), p))
            return list(found.values())

        enc_params, dec_params = params(enc, dec_ids), params(dec, enc_ids)
        shared = {id(p) for _, p in enc_params} & {id(p) for _, p in dec_params}
        self.encoder_params = [(n, p) for n, p in enc_params if id(p) not in shared]
        self.decoder_params = [(n, p) for n, p in dec_params if id(p) not in shared]
        self.entry = entry[0] if entry else None

    @contextmanager
    def capture(self) -> Iterator[list[Tensor]]:
        """The z's the decoder's entry receives while the block runs (e.g. inside the user's ``loss_fn``)."""
        seen: list[Tensor] = []
        if self.entry is None:
            yield seen
            return
        module, index = self.entry

        def keep(_: nn.Module, args: tuple[Any, ...]) -> None:
            if len(args) > index and isinstance(args[index], Tensor):
                seen.append(args[index].detach())

        hook = module.register_forward_pre_hook(keep)
        try:
            yield seen
        finally:
            hook.remove()

    @contextmanager
    def mode(self, training: bool) -> Iterator[None]:
        """All networks of the copy in train (or eval) mode for the block; their own modes restored after."""
        modules = self.networks()
        before = [m.training for m in modules]
        try:
            for m in modules:
                m.training = training
            yield
        finally:
            for m, flag in zip(modules, before):
                m.training = flag

    def loss(self) -> float:
        """``loss_fn(model, batch)`` at the fixed seed, as a float."""
        with torch.no_grad():
            return scalar(self.call_loss())

    def call_loss(self) -> object:
        """``loss_fn(model, batch)`` at the fixed seed, as it returns it; its errors as one line."""
        assert self.loss_fn is not None
        self.reseed()
        try:
            return self.loss_fn(self.model, self.batch)
        except Exception as exc:  # noqa: BLE001 — the user's code: any error becomes one line
            raise ParameterError(f"loss_fn(model, batch) raised {type(exc).__name__}: {exc}") from None


@contextmanager
def _recording(modules: list[nn.Module]) -> Iterator[dict[int, nn.Module]]:
    ran: dict[int, nn.Module] = {}

    def note(module: nn.Module, _: tuple[Any, ...]) -> None:
        ran.setdefault(id(module), module)

    hooks = [m.register_forward_pre_hook(note) for m in modules]
    try:
        yield ran  # type: ignore[misc]
    finally:
        for hook in hooks:
            hook.remove()


def scalar(value: object) -> float:
    """The float of a loss: a one-element tensor or a number; a one-line ParameterError otherwise."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ParameterError(f"loss_fn must return a scalar tensor, got shape {tuple(value.shape)}")
        return float(value.detach().reshape(()))
    if isinstance(value, (int, float, np.floating)):
        return float(value)
    raise ParameterError(f"loss_fn must return a scalar tensor, got {type(value).__name__}")


def as_device(x: Tensor, device: torch.device) -> Tensor:
    x = x.to(device)
    return x if x.is_floating_point() else x.float()


def batches(data: object, batch_size: int) -> Iterator[object]:
    """The user's data as batches: an array or tensor is cut into rows of ``batch_size``; a DataLoader or
    any other iterable yields its own batches."""
    if isinstance(data, np.ndarray):
        data = torch.as_tensor(data)
    if isinstance(data, Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise DataError(f"data must have at least one example, got shape {tuple(data.shape)}")
        for start in range(0, data.shape[0], batch_size):
            yield data[start:start + batch_size]
        return
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise DataError(f"data must be an array, a tensor, a DataLoader or an iterable of batches, got "
                        f"{type(data).__name__}")
    yield from data


def gather(adapter: ModelAdapter, data: object, *, examples: int, batch_size: int,
           device: torch.device) -> tuple[object, Tensor]:
    """The first batch as yielded, and the encoder inputs of up to ``examples`` examples (a few batches)."""
    first: object = None
    xs: list[Tensor] = []
    count = 0
    for batch in itertools.islice(batches(data, batch_size), 10_000):
        if first is None:
            first = batch
        x = as_device(adapter.inputs(batch), device)
        xs.append(x[: examples - count])
        count += xs[-1].shape[0]
        if count >= examples:
            break
    if first is None or count == 0:
        raise DataError("data yielded no batch")
    if count < 2:
        raise DataError("the doctor needs at least 2 examples")
    return first, torch.cat(xs)
