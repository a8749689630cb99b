"""Linear layers for K runs at once whose numbers are each run's own: a run's ``F.linear`` under ``vmap``
is K calls of the very products a separate run makes (forward and backward), not one batched product.

:func:`template` gives the program the module it calls with each run's parameters: with ``exact`` its
``nn.Linear`` layers are :class:`RunLinear` (these products), else left to ``vmap``'s batched ones.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def save_linear_inputs(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    """``setup_context`` of both linear functions below: what their backward passes need."""
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


class StackedLinear(torch.autograd.Function):
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

    setup_context = staticmethod(save_linear_inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        per_run = [linear_grads(x[k], weight[k], grad[k], ctx.needs_input_grad, ctx.has_bias)
                   for k in range(len(weight))]
        return tuple(None if grads[0] is None else torch.stack(grads)
                     for grads in zip(*per_run))


def linear_grads(x: Tensor, weight: Tensor, grad: Tensor, needs: tuple[bool, ...],
                  has_bias: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The gradients autograd computes for one run's ``F.linear(x, weight, bias)``, row-major x.

    ``F.linear`` folds the leading dimensions of x into rows and multiplies by weightᵀ with
    ``mm``/``addmm``, whose backward pass computes grad·weight, gradᵀ·rows and the column sums of grad.
    """
    rows, grads = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
    return (grads.mm(weight).reshape(x.shape) if needs[0] else None,
            grads.t().mm(rows) if needs[1] else None,
            grads.sum(0) if has_bias and needs[2] else None)


class RunLinearFunction(torch.autograd.Function):
    """One run's ``F.linear`` whose batching rule (``vmap``) is :class:`StackedLinear`."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    setup_context = staticmethod(save_linear_inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # Used only outside vmap; under vmap, StackedLinear's backward runs.
        x, weight = ctx.saved_tensors
        return linear_grads(x, weight, grad, ctx.needs_input_grad, ctx.has_bias)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], x: Tensor, weight: Tensor,
             bias: Tensor | None) -> tuple[Tensor, int]:
        size = info.batch_size

        def runs_first(tensor: Tensor | None, dim: int | None) -> Tensor | None:
            if tensor is None:
                return None
            return tensor.movedim(dim, 0) if dim is not None else tensor.expand(size, *tensor.shape)

        x_runs, weight_runs, bias_runs = (runs_first(t, d) for t, d in zip((x, weight, bias), in_dims))
        return StackedLinear.apply(x_runs, weight_runs, bias_runs), 0


class RunLinear(nn.Linear):
    """``nn.Linear`` through :class:`RunLinearFunction`: the template's linear layers, same parameter names."""

    def forward(self, x: Tensor) -> Tensor:
        return RunLinearFunction.apply(x, self.weight, self.bias)


def template(wrapper: nn.Module, exact: bool = True) -> nn.Module:
    """A parameter-free copy of one run's module (meta tensors); with ``exact`` every nn.Linear is made a
    RunLinear (each run's product by a separate run's call), else left to ``vmap``'s batched products."""
    shell = copy.deepcopy(wrapper).to("meta")
    if not exact:
        return shell
    for name, module in list(shell.named_modules()):
        if type(module) is nn.Linear:                        # a subclass may compute something else
            parent, _, child = name.rpartition(".")
            setattr(shell.get_submodule(parent), child,
                    RunLinear(module.in_features, module.out_features, bias=module.bias is not None, device="meta"))
    return shell
