"""Adapters for collapsekit's own one-level models (VAE, CVAE) and for a pair of plain callables."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal

from collapsekit._validation import non_negative, positive
from collapsekit.errors import DataError, ParameterError
from collapsekit.adapters.batches import as_tensor, batch_inputs, normal_posterior
from collapsekit.models.cvae import CVAE
from collapsekit.models.hvae import HierarchicalVAE
from collapsekit.models.vae import VAE


def _beta(beta: float | None) -> float | None:
    return None if beta is None else non_negative("beta", beta)


class VAEAdapter:
    """collapsekit's :class:`~collapsekit.models.VAE`: its encoder, decoder, likelihood and η_enc.

    Parameters
    ----------
    model : VAE
    beta : float, optional
        The KL weight it was trained with (a model does not record its objective).
    """

    def __init__(self, model: VAE, *, beta: float | None = None) -> None:
        self.model = model
        config = getattr(model, "config", None)
        kind = config.get("kind") if isinstance(config, dict) else None
        self.name = f"collapsekit {str(kind).upper() if kind else type(model).__name__}"
        self.prior_std = float(model.eta_enc)
        self.beta = _beta(beta)
        self.notes: list[str] = []

    def modules(self) -> Sequence[nn.Module]:
        return [self.model]

    def inputs(self, batch: object) -> Tensor:
        return batch_inputs(batch)

    def posterior(self, x: Tensor) -> Normal:
        return normal_posterior("encoder", self.model.encoder(x))

    def decode(self, z: Tensor) -> Distribution:
        return self.model.likelihood(self.model.decoder(z))


class CVAEAdapter:
    """collapsekit's :class:`~collapsekit.models.CVAE`. Its encoder reads (x, y): the adapter's input is
    the two side by side, ``[x | y]`` (B, D_x + D_y), and the likelihood's target is y
    (``target(inputs)``). ``decode(z)`` conditions on the x of the latest ``posterior`` call, with z
    (M, d) sample-major over that batch (M a multiple of its size), which is how the diagnostics call it.

    Parameters
    ----------
    model : CVAE
    x_dim : int, optional
        D_x; read from ``model.config`` when it was built by ``build_model``.
    beta : float, optional
        The KL weight it was trained with.
    """

    def __init__(self, model: CVAE, *, x_dim: int | None = None, beta: float | None = None) -> None:
        self.model = model
        config = getattr(model, "config", None)
        if x_dim is None and isinstance(config, dict):
            x_dim = config.get("x_dim")
        if x_dim is None:
            raise ParameterError("a CVAE's adapter needs x_dim (the condition's width): as_adapter(model, x_dim=...)")
        self.x_dim = int(x_dim)
        self.name = "collapsekit CVAE"
        self.prior_std = float(model.eta_enc)
        self.beta = _beta(beta)
        self.notes = ["CVAE: the likelihood is log p(y | x, z); the encoder's input is [x | y]"]
        self._condition: Tensor | None = None

    def modules(self) -> Sequence[nn.Module]:
        return [self.model]

    def inputs(self, batch: object) -> Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise DataError(f"a CVAE's batch must be (x, y, ...), got {type(batch).__name__}")
        x, y = as_tensor("x", batch[0]), as_tensor("y", batch[1])
        if x.shape[0] != y.shape[0]:
            raise DataError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        if x.shape[-1] != self.x_dim:
            raise DataError(f"x has {x.shape[-1]} features, the CVAE's x_dim is {self.x_dim}")
        return torch.cat([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1).to(x.dtype)], dim=1)

    def _split(self, xy: Tensor) -> tuple[Tensor, Tensor]:
        if xy.dim() != 2 or xy.shape[1] <= self.x_dim:
            raise DataError(f"a CVAE adapter's input is [x | y] of shape (B, {self.x_dim} + D_y), got "
                            f"{tuple(xy.shape)}")
        return xy[:, : self.x_dim], xy[:, self.x_dim:]

    def target(self, xy: Tensor) -> Tensor:
        """y, what the likelihood scores."""
        return self._split(xy)[1]

    def posterior(self, xy: Tensor) -> Normal:
        x, y = self._split(xy)
        self._condition = x
        return normal_posterior("encoder", self.model.encoder(x, y))

    def decode(self, z: Tensor) -> Distribution:
        if self._condition is None:
            raise ParameterError("a CVAE adapter decodes given x: call posterior(inputs) on the batch first")
        b = self._condition.shape[0]
        if z.shape[0] % b:
            raise DataError(f"z has {z.shape[0]} rows, not a multiple of the conditioning batch's {b}")
        x = self._condition.repeat(z.shape[0] // b, 1)
        return self.model.likelihood(self.model.decoder(x, z))


class FunctionAdapter:
    """Any model given as two callables.

    Parameters
    ----------
    encoder : callable
        ``encoder(x) -> (mu, log_var)`` or a diagonal ``Normal`` (``Independent(Normal)`` too), shape
        (B, *latent_shape).
    decoder : callable, optional
        ``decoder(z) -> torch.distributions.Distribution`` over x, one log-density per row of z.
        Without it ``decode`` returns None (no likelihood).
    prior_std : float
        η_enc.
    beta : float, optional
        The KL weight of the training loss, when known.
    name : str
        What reports call the model.
    inputs : callable, optional
        ``inputs(batch) -> x``; default: the batch, its first element or its ``"x"``-like key.
    """

    def __init__(self, encoder: Callable[[Tensor], object], decoder: Callable[[Tensor], Distribution] | None = None,
                 *, prior_std: float = 1.0, beta: float | None = None, name: str = "custom model",
                 inputs: Callable[[object], Tensor] | None = None) -> None:
        for label, value in (("encoder", encoder), ("decoder", decoder), ("inputs", inputs)):
            if value is not None and not callable(value):
                raise ParameterError(f"{label} must be callable, got {type(value).__name__}")
        if not callable(encoder):
            raise ParameterError("encoder is required")
        self.encoder, self.decoder, self._inputs = encoder, decoder, inputs
        self.name = str(name)
        self.prior_std = positive("prior_std", prior_std)
        self.beta = _beta(beta)
        self.notes: list[str] = []

    def modules(self) -> Sequence[nn.Module]:
        return [m for m in (self.encoder, self.decoder) if isinstance(m, nn.Module)]

    def inputs(self, batch: object) -> Tensor:
        return batch_inputs(batch) if self._inputs is None else self._inputs(batch)

    def posterior(self, x: Tensor) -> Normal:
        return normal_posterior("encoder", self.encoder(x))

    def decode(self, z: Tensor) -> Distribution | None:
        if self.decoder is None:
            return None
        distribution = self.decoder(z)
        if not isinstance(distribution, Distribution):
            raise ParameterError(f"decoder must return a torch.distributions.Distribution, got "
                                 f"{type(distribution).__name__}")
        return distribution


def is_callable_pair(model: object) -> bool:
    """``(encoder, decoder)``: a tuple or list of two, the first callable, the second callable or None."""
    return (isinstance(model, (tuple, list)) and len(model) == 2 and callable(model[0])
            and (model[1] is None or callable(model[1])))


def from_pair(model: Sequence[object], **options: object) -> FunctionAdapter:
    return FunctionAdapter(model[0], model[1], **options)  # type: ignore[arg-type]


def is_native(model: object) -> bool:
    return isinstance(model, (VAE, CVAE, HierarchicalVAE))


def from_native(model: VAE | CVAE, **options: object) -> VAEAdapter | CVAEAdapter:
    if isinstance(model, HierarchicalVAE):
        raise ParameterError("a hierarchical VAE has several latent levels, which one adapter cannot express: "
                             "diagnose it with collapsekit.diagnostics.diagnose_model(model, x)")
    return CVAEAdapter(model, **options) if isinstance(model, CVAE) else VAEAdapter(model, **options)  # type: ignore[arg-type]
