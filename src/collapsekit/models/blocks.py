"""Encoders and decoders: the building blocks every model composes.

Contracts (what a model needs from a block, so users can bring their own):

- an **encoder** maps an input of shape (..., D) to ``(mu, log_var)``, each (..., d): the mean
  and the log-variance of a diagonal Gaussian posterior. Leading dimensions are kept, because
  the upper encoders of a hierarchy receive samples of shape (S, B, d). A *branch* encoder (one
  half of a CVAE's additive encoder) may return ``log_var=None``: it contributes a mean only.
- a **decoder** maps z of shape (..., d) to the parameters of the likelihood, (..., D): a mean
  for :class:`~collapsekit.models.likelihoods.GaussianLikelihood`, logits for
  :class:`~collapsekit.models.likelihoods.BernoulliLikelihood`.

Standard deviations come in three kinds (the ``std`` argument of every encoder):

- ``"data"``: a log-variance head on the encoder's last features (the usual VAE);
- ``"learnable"``: one learnable std vector shared by every input (data-independent, the
  linear theory's "learnable Σ"), initialised at ``init_std``;
- a number or one number per dimension: a fixed, data-independent std (the theory's
  "unlearnable Σ"); it is a buffer, so no optimiser can change it;
- ``None``: no std at all (a mean-only branch).

Initialisation: PyTorch defaults everywhere; the theory needs no particular starting point (its
optima are global), only that a learnable std starts at ``init_std``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from collapsekit.errors import DataError, ParameterError
from collapsekit.models._checks import activation, count, counts, output_activation, std_values

#: What an encoder's ``std`` may be: "data", "learnable", a number, one number per dimension, None.
StdSpec = str | float | Sequence[float] | None


def _check_features(field: str, tensor: Tensor, features: int) -> None:
    if tensor.shape[-1] != features:
        raise DataError(f"{field} has {tensor.shape[-1]} features, expected {features}")


class SharedStd(nn.Module):
    """One posterior std vector shared by every input: the linear theory's data-independent Σ.

    Parameters
    ----------
    dim : int
        Latent size.
    std : "learnable", float or sequence of float
        ``"learnable"``: a learnable log-std (parameter ``log_std``), started at ``init_std``.
        A number (every dimension) or one number per dimension: fixed stds, kept in the
        buffer ``log_std`` so that the state dict has the same keys either way.
    init_std : float or sequence of float
        Starting std of the learnable form.
    """

    def __init__(self, dim: int, std: str | float | Sequence[float] = "learnable",
                 init_std: float | Sequence[float] = 1.0) -> None:
        super().__init__()
        dim = count("latent_dim", dim)
        if isinstance(std, str):
            if std != "learnable":
                raise ParameterError(f"std must be 'learnable', a number or {dim} numbers, got {std!r}")
            start = std_values("init_std", init_std, dim)
            self.log_std: Tensor = nn.Parameter(torch.as_tensor(np.log(start), dtype=torch.get_default_dtype()))
        else:
            fixed = std_values("std", std, dim)
            self.register_buffer("log_std", torch.as_tensor(np.log(fixed), dtype=torch.get_default_dtype()))

    @property
    def learnable(self) -> bool:
        """True when the std is trained."""
        return isinstance(self.log_std, nn.Parameter)

    @property
    def std(self) -> Tensor:
        """The current std vector, (d,)."""
        return self.log_std.exp()

    def extra_repr(self) -> str:
        values = ", ".join(f"{v:.3g}" for v in self.std.detach().tolist())
        return f"{'learnable' if self.learnable else 'fixed'}, std=[{values}]"

    def forward(self, like: Tensor) -> Tensor:
        """log σ² broadcast to the shape of ``like`` (a mean of shape (..., d))."""
        return (2.0 * self.log_std).expand_as(like)


class _GaussianHead(nn.Module):
    """Features → (mu, log_var): a linear mean head (optionally squashed) and one of the std kinds."""

    def __init__(self, features: int, latent_dim: int, std: StdSpec, init_std: float | Sequence[float],
                 mean_activation: str | None, bias: bool = True) -> None:
        super().__init__()
        self.mean = nn.Linear(features, latent_dim, bias=bias)
        self.mean_activation = output_activation("mean_activation", mean_activation)
        self.log_var: nn.Module | None = None
        if isinstance(std, str) and std not in ("data", "learnable"):
            raise ParameterError(f"std must be 'data', 'learnable', a number or {latent_dim} numbers, got {std!r}")
        if isinstance(std, str) and std == "data":
            self.log_var = nn.Linear(features, latent_dim)
        elif std is not None:
            self.log_var = SharedStd(latent_dim, std, init_std)
        self.data_dependent_std = isinstance(self.log_var, nn.Linear)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        mu = self.mean_activation(self.mean(h))
        if self.log_var is None:
            return mu, None
        return mu, self.log_var(h) if self.data_dependent_std else self.log_var(mu)


class _Encoder(nn.Module):
    """Shared attributes of the encoders below."""

    in_dim: int
    latent_dim: int
    head: _GaussianHead

    @property
    def has_log_var(self) -> bool:
        """False for a mean-only branch (``std=None``)."""
        return self.head.log_var is not None

    @property
    def shared_std(self) -> SharedStd | None:
        """The data-independent std module, or None (data-dependent std or mean only)."""
        return self.head.log_var if isinstance(self.head.log_var, SharedStd) else None


class LinearEncoder(_Encoder):
    """The linear theory's encoder: mu = W x (no bias), data-independent std.

    Parameters
    ----------
    in_dim, latent_dim : int
        Input size D and latent size d.
    std : "learnable", float, sequence of float or None
        See :class:`SharedStd`; None makes a mean-only branch (for a CVAE's additive encoder).
        The std of this encoder never depends on x, as in docs/theory.md §1.
    init_std : float or sequence of float
        Starting std when ``std="learnable"``.

    Notes
    -----
    W is ``self.head.mean.weight`` (d × D), initialised by PyTorch's default.
    """

    def __init__(self, in_dim: int, latent_dim: int, std: StdSpec = "learnable",
                 init_std: float | Sequence[float] = 1.0) -> None:
        super().__init__()
        self.in_dim, self.latent_dim = count("in_dim", in_dim), count("latent_dim", latent_dim)
        if isinstance(std, str) and std == "data":
            raise ParameterError("std='data' is not linear-theory: a LinearEncoder's std is data-independent; "
                                 "use 'learnable', a number, or MLPEncoder(hidden=()) for a log-var head")
        self.head = _GaussianHead(self.in_dim, self.latent_dim, std, init_std, None, bias=False)

    @property
    def weight(self) -> Tensor:
        """W, (d, D)."""
        return self.head.mean.weight

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        _check_features("encoder input", x, self.in_dim)
        return self.head(x)


def _mlp_trunk(in_dim: int, hidden: Sequence[int], act: str) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), activation("activation", act)]
        width = size
    return nn.Sequential(*layers), width


class MLPEncoder(_Encoder):
    """Fully connected encoder: (Linear-activation) × len(hidden), then Gaussian heads.

    Parameters
    ----------
    in_dim, latent_dim : int
    hidden : sequence of int
        Hidden widths; empty gives an affine encoder (with bias).
    activation : str
        Hidden nonlinearity ("relu", "tanh", "gelu", ...).
    std : "data", "learnable", float, sequence or None
        "data": a log-var head on the last hidden layer; otherwise see :class:`SharedStd`.
    init_std : float or sequence of float
        Starting std when ``std="learnable"``.
    mean_activation : None, "relu", "tanh" or "sigmoid"
        Applied to the mean: "relu" gives the paper's ReLU VAE (μ ≥ 0, docs/experiments.md §2, note d),
        "tanh" its MHVAE (note e).
    """

    def __init__(self, in_dim: int, latent_dim: int, hidden: Sequence[int] = (256,), activation: str = "relu",
                 std: StdSpec = "data", init_std: float | Sequence[float] = 1.0,
                 mean_activation: str | None = None) -> None:
        super().__init__()
        self.in_dim, self.latent_dim = count("in_dim", in_dim), count("latent_dim", latent_dim)
        self.trunk, width = _mlp_trunk(self.in_dim, counts("hidden", hidden, allow_empty=True), activation)
        self.head = _GaussianHead(width, self.latent_dim, std, init_std, mean_activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        _check_features("encoder input", x, self.in_dim)
        return self.head(self.trunk(x))


def _conv_sizes(side: int) -> tuple[int, int]:
    """Spatial sizes after one and two Conv(k3, s2, p1): ⌈side/2⌉ and ⌈side/4⌉ (exact for any side)."""
    mid = (side + 1) // 2
    return mid, (mid + 1) // 2


def _image_side(field: str, side: object) -> int:
    return count(field, side, minimum=4)


class ConvEncoder(_Encoder):
    """Convolutional encoder for square single-channel images, given flattened (..., side²).

    Conv(1→c₁, k3, s2, p1)-act-Conv(c₁→c₂, k3, s2, p1)-act-flatten → Gaussian heads
    (docs/experiments.md §2, note b). Each stride-2 convolution maps a side s to ⌈s/2⌉, so any side ≥ 4
    works: 28 → 14 → 7 (MNIST), 8 → 4 → 2 (digits), 14 → 7 → 4 (an MNIST quadrant).

    Parameters
    ----------
    image_side : int
    latent_dim : int
    channels : (int, int)
        c₁, c₂.
    activation, std, init_std, mean_activation
        As for :class:`MLPEncoder`.
    """

    def __init__(self, image_side: int, latent_dim: int, channels: Sequence[int] = (32, 16),
                 activation: str = "relu", std: StdSpec = "data", init_std: float | Sequence[float] = 1.0,
                 mean_activation: str | None = None) -> None:
        super().__init__()
        self.image_side = _image_side("image_side", image_side)
        self.in_dim, self.latent_dim = self.image_side**2, count("latent_dim", latent_dim)
        c1, c2 = _two_channels(channels)
        self.trunk = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, stride=2, padding=1), _act(activation),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1), _act(activation), nn.Flatten())
        base = _conv_sizes(self.image_side)[1]
        self.head = _GaussianHead(c2 * base * base, self.latent_dim, std, init_std, mean_activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        _check_features("encoder input", x, self.in_dim)
        lead = x.shape[:-1]
        features = self.trunk(x.reshape(-1, 1, self.image_side, self.image_side))
        return self.head(features.reshape(*lead, -1))


def _two_channels(channels: object) -> tuple[int, int]:
    values = counts("channels", channels)
    if len(values) != 2:
        raise ParameterError(f"channels must be two sizes (c1, c2), got {channels!r}")
    return values[0], values[1]


def _act(name: str) -> nn.Module:
    return activation("activation", name)


# -- decoders -----------------------------------------------------------------------------------
class LinearDecoder(nn.Module):
    """The linear theory's decoder: z ↦ U z, no bias. ``weight`` is U, (D, d)."""

    def __init__(self, latent_dim: int, out_dim: int) -> None:
        super().__init__()
        self.latent_dim, self.out_dim = count("latent_dim", latent_dim), count("out_dim", out_dim)
        self.map = nn.Linear(self.latent_dim, self.out_dim, bias=False)

    @property
    def weight(self) -> Tensor:
        """U, (D, d)."""
        return self.map.weight

    def forward(self, z: Tensor) -> Tensor:
        _check_features("decoder input", z, self.latent_dim)
        return self.map(z)


class MLPDecoder(nn.Module):
    """Fully connected decoder: (Linear-activation) × len(hidden), Linear(→ out_dim), out_activation.

    ``out_activation`` ("tanh", "sigmoid", "relu" or None) squashes a Gaussian mean; leave it None
    for a Bernoulli likelihood, which takes logits.
    """

    def __init__(self, latent_dim: int, out_dim: int, hidden: Sequence[int] = (256,), activation: str = "relu",
                 out_activation: str | None = None) -> None:
        super().__init__()
        self.latent_dim, self.out_dim = count("latent_dim", latent_dim), count("out_dim", out_dim)
        trunk, width = _mlp_trunk(self.latent_dim, counts("hidden", hidden, allow_empty=True), activation)
        self.net = nn.Sequential(*trunk, nn.Linear(width, self.out_dim),
                                 output_activation("out_activation", out_activation))

    def forward(self, z: Tensor) -> Tensor:
        _check_features("decoder input", z, self.latent_dim)
        return self.net(z)


def _upsample(in_channels: int, out_channels: int, target: int, source: int) -> nn.ConvTranspose2d:
    """ConvT(k3, s2, p1) from side ``source`` to ``target`` ∈ {2·source − 1, 2·source} (one encoder step)."""
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1,
                              output_padding=target - 2 * source + 1)


class ConvDecoder(nn.Module):
    """Convolutional decoder to flattened square images (..., side²), mirroring :class:`ConvEncoder`.

    Linear(d → c₂·b²)-Unflatten(c₂, b, b)-act-ConvT(c₂→c₁, s2)-act-ConvT(c₁→1, s2)-flatten, with
    b = ⌈side/4⌉ and output paddings chosen so that every side ≥ 4 is reached exactly.
    """

    def __init__(self, latent_dim: int, image_side: int, channels: Sequence[int] = (32, 16),
                 activation: str = "relu", out_activation: str | None = None) -> None:
        super().__init__()
        self.latent_dim = count("latent_dim", latent_dim)
        self.image_side = _image_side("image_side", image_side)
        self.out_dim = self.image_side**2
        c1, c2 = _two_channels(channels)
        mid, base = _conv_sizes(self.image_side)
        self.net = nn.Sequential(
            nn.Linear(self.latent_dim, c2 * base * base), nn.Unflatten(-1, (c2, base, base)), _act(activation),
            _upsample(c2, c1, mid, base), _act(activation), _upsample(c1, 1, self.image_side, mid),
            nn.Flatten(), output_activation("out_activation", out_activation))

    def forward(self, z: Tensor) -> Tensor:
        _check_features("decoder input", z, self.latent_dim)
        lead = z.shape[:-1]
        return self.net(z.reshape(-1, self.latent_dim)).reshape(*lead, self.out_dim)


class ImageUpsampleDecoder(nn.Module):
    """A conv map from a small square image to a vector: the paper's CNN CVAE decoder x-branch (note c).

    Unflatten(1, s, s)-ConvT(1→c, k3, s2, p1, op1)-act-ConvT(c→1, k3, s1, p1)-flatten((2s)²)-Linear(→ out_dim).
    For MNIST quadrants: 14×14 → 28×28 → 784 → 588.
    """

    def __init__(self, image_side: int, out_dim: int, channels: int = 32, activation: str = "relu") -> None:
        super().__init__()
        self.image_side = count("image_side", image_side)
        self.in_dim, self.out_dim = self.image_side**2, count("out_dim", out_dim)
        width = count("channels", channels)
        self.net = nn.Sequential(
            nn.Unflatten(-1, (1, self.image_side, self.image_side)),
            nn.ConvTranspose2d(1, width, kernel_size=3, stride=2, padding=1, output_padding=1), _act(activation),
            nn.ConvTranspose2d(width, 1, kernel_size=3, stride=1, padding=1), nn.Flatten(),
            nn.Linear(4 * self.in_dim, self.out_dim))

    def forward(self, x: Tensor) -> Tensor:
        _check_features("decoder input", x, self.in_dim)
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, self.in_dim)).reshape(*lead, self.out_dim)


# -- quadrant plumbing for the paper's conv CVAE -----------------------------------------------------
def quadrant_columns(image_side: int) -> Tensor:
    """Positions, in a row-major flattened side×side image, of the CVAE output y's columns.

    y is the top-left, top-right and bottom-right quadrants, each flattened row-major and
    concatenated — the layout of :func:`collapsekit.data.views.quadrant_split` — so
    ``image[..., quadrant_columns(side)]`` is y.
    """
    side = count("image_side", image_side, minimum=2)
    if side % 2:
        raise ParameterError(f"image_side must be even to split into quadrants, got {side}")
    h = side // 2
    grid = np.arange(side * side).reshape(side, side)
    columns = np.concatenate([grid[:h, :h].ravel(), grid[:h, h:].ravel(), grid[h:, h:].ravel()])
    return torch.as_tensor(columns, dtype=torch.long)


class KeepColumns(nn.Module):
    """Keep some output columns of a decoder: ``decoder(z)[..., index]``.

    With :func:`quadrant_columns` a CVAE's z-decoder can draw a full image and keep only the
    three target quadrants (docs/experiments.md §2, note c).
    """

    index: Tensor

    def __init__(self, decoder: nn.Module, index: Sequence[int] | Tensor) -> None:
        super().__init__()
        self.decoder = decoder
        # The index is configuration, not a weight: rebuilt from the config, not checkpointed.
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long).reshape(-1), persistent=False)
        if self.index.numel() == 0:
            raise ParameterError("index must select at least one column")
        self.latent_dim = getattr(decoder, "latent_dim", None)
        self.out_dim = int(self.index.numel())

    def forward(self, z: Tensor) -> Tensor:
        return self.decoder(z).index_select(-1, self.index)


class QuadrantCanvas(nn.Module):
    """Place the CVAE output y (three quadrants, see :func:`quadrant_columns`) in a blank image.

    (..., 3·side²/4) → (..., side²) with the input quadrant (bottom-left) zero: the paper's conv
    CVAE encodes y as the full image with the bottom-left quadrant zeroed (docs/experiments.md §1.2).
    Use it in front of a :class:`ConvEncoder` of the full side.
    """

    index: Tensor

    def __init__(self, image_side: int) -> None:
        super().__init__()
        self.register_buffer("index", quadrant_columns(image_side), persistent=False)
        self.image_side = int(image_side)
        self.in_dim = int(self.index.numel())

    def forward(self, y: Tensor) -> Tensor:
        _check_features("y", y, self.in_dim)
        canvas = y.new_zeros(*y.shape[:-1], self.image_side**2)
        return canvas.index_copy(-1, self.index, y)
