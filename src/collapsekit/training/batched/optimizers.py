"""The optimisers of a batched program: one per group of neighbouring runs with the same settings, over
those runs' rows of every stacked parameter, and each run's share of them (clipping, the copy out).

Adam and SGD update every element independently, so one optimiser over stacked parameters is K
optimisers; runs with different optimiser settings (lr, weight decay, momentum) get one optimiser
per setting, over their own rows of the stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from collapsekit.training.config import RunConfig
from collapsekit.training.trainer import build_optimizer


@dataclass
class OptimizerGroup:
    """Consecutive runs with the same optimiser settings: their rows of every stacked parameter."""

    rows: range
    config: RunConfig
    leaves: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer


def optimizer_key(config: RunConfig) -> tuple[float, float, float]:
    """What must be equal for two runs to share an optimiser: lr, weight decay, momentum."""
    o = config.optim
    return (o.lr, o.weight_decay, o.momentum)


class StackedOptimizers:
    """The groups' optimisers over the K runs' stacked parameters (runs that share settings are neighbours)."""

    def __init__(self, configs: Sequence[RunConfig], params: dict[str, Tensor]) -> None:
        self.names = list(params)
        self.groups: list[OptimizerGroup] = []
        k, start = len(configs), 0
        while start < k:
            stop = start + 1
            while stop < k and optimizer_key(configs[stop]) == optimizer_key(configs[start]):
                stop += 1
            leaves = {name: nn.Parameter(p[start:stop].detach().clone()) for name, p in params.items()}
            # The trainer's own optimiser factory; parameters in model.parameters() order, so that
            # a run's slice of this optimiser's state is that run's optimiser state.
            optimizer = build_optimizer(configs[start], list(leaves.values()))
            self.groups.append(OptimizerGroup(range(start, stop), configs[start], leaves, optimizer))
            start = stop

    def stacked(self) -> dict[str, Tensor]:
        """Every parameter stacked over the K runs (the groups' leaves, joined when there are several)."""
        if len(self.groups) == 1:
            return dict(self.groups[0].leaves)
        return {name: torch.cat([group.leaves[name] for group in self.groups]) for name in self.names}

    def cosine_lr(self, step: int, total: int) -> None:
        """The trainer's cosine learning rate at ``step`` of ``total``, each group from its own lr."""
        for group in self.groups:
            for param_group in group.optimizer.param_groups:   # the trainer's expression, term for term
                param_group["lr"] = group.config.optim.lr * 0.5 * (1 + math.cos(math.pi * step / total))

    def zero_grad(self) -> None:
        for group in self.groups:
            group.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        for group in self.groups:
            group.optimizer.step()

    def clip_run_by_run(self, max_norm: float) -> None:
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

    def clip_at_once(self, max_norm: float) -> None:
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

    def copy_out(self, k: int, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Run k's weights into ``module`` (its own model) and its optimiser state into ``optimizer``."""
        group = next(group for group in self.groups if k in group.rows)
        local = k - group.rows.start
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                parameter.copy_(group.leaves[name][local])
        stacked = group.optimizer.state_dict()
        shapes = [leaf.shape for leaf in group.leaves.values()]
        # Element-wise state (moments, momentum) has the stacked shape and is sliced; scalars (step) are shared.
        state = {index: {key: run_state(value, shapes[index], local) for key, value in values.items()}
                 for index, values in stacked["state"].items()}
        optimizer.load_state_dict({"state": state, "param_groups": stacked["param_groups"]})


def run_state(value: Any, stacked_shape: torch.Size, row: int) -> Any:
    """One run's copy of an optimiser state entry: element-wise state (moments, momentum) has the
    stacked parameter's shape and is sliced; the rest (the step count) is shared by the group."""
    if not isinstance(value, Tensor):
        return value
    return (value[row] if value.shape == stacked_shape else value).clone()
