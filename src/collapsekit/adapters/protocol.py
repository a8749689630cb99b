"""The adapter protocol: what collapsekit needs from a model it did not build.

An adapter turns any VAE-like model into four things: its networks (to place and put in eval mode), the
encoder's input of one batch, the posterior q(z|x) as a diagonal ``Normal`` and the decoder's likelihood
p(x|z). The diagnostics, the doctor and the integrations only talk to this protocol, so a model family
needs one adapter (a class with these members) and one :func:`~collapsekit.adapters.register_adapter`
call to be diagnosed everywhere.

Shapes: ``posterior(x)`` has loc/scale (B, *latent_shape) — (B, d) for a vector latent, (B, C, h, w) for
a spatial one. ``decode(z)`` takes z of shape (M, *latent_shape) (M = B, or S·B sample-major when
several samples per example are decoded) and returns a distribution of batch shape (M,) whose event is
every feature of the likelihood's target, so that ``decode(z).log_prob(target)`` is one number per row.
The target is x itself, except where an adapter says otherwise with a ``target(x)`` member (a CVAE's
y): read it with :func:`likelihood_target`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor, nn
from torch.distributions import Distribution, Normal


@runtime_checkable
class ModelAdapter(Protocol):
    """What collapsekit needs from a model (see the module docstring for shapes).

    Attributes
    ----------
    name : str
        What reports call the model, e.g. ``"pythae BetaVAE"``, ``"diffusers AutoencoderKL"``.
    prior_std : float
        η_enc: the prior is N(0, η_enc² I).
    beta : float or None
        The KL weight of the model's own training loss, when the adapter knows it.
    notes : list of str
        Stand-ins the adapter made, said in reports (e.g. "Laplace likelihood, scale fitted on the data").
    """

    name: str
    prior_std: float
    beta: float | None
    notes: list[str]

    def modules(self) -> Sequence[nn.Module]:
        """The networks: placed on a device and put in eval mode by the caller, restored after."""
        ...

    def inputs(self, batch: object) -> Tensor:
        """One batch as the user's loader yields it → the encoder's input x, (B, ...)."""
        ...

    def posterior(self, x: Tensor) -> Normal:
        """q(z|x), loc/scale of shape (B, *latent_shape)."""
        ...

    def decode(self, z: Tensor) -> Distribution | None:
        """p(x|z) for z of shape (M, *latent_shape), event over all of x's features; None: no likelihood."""
        ...


def likelihood_target(adapter: ModelAdapter, x: Tensor) -> Tensor:
    """What ``adapter.decode(z).log_prob`` scores for the encoder input x: ``adapter.target(x)`` when the
    adapter has that optional member (a CVAE scores y, not [x, y]), else x."""
    target = getattr(adapter, "target", None)
    return x if target is None else target(x)
