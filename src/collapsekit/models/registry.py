"""Build a model from names: ``build_model("cvae", "mlp", x_dim=196, y_dim=588, latent_dims=[16])``.

Dispatch goes through dicts (kind → model builder, architecture → block builders, name →
likelihood), so adding an architecture is one entry, not one more branch in every builder.
Every impossible combination raises :class:`~collapsekit.errors.ParameterError` naming the field.

Architectures, per kind:

- ``"linear"``: docs/theory.md §1 exactly — no biases, data-independent encoder std; the CVAE is
  W₁x + W₂y → z, U₁z + U₂x → y; the hierarchy is linear at every level.
- ``"mlp"``: (Linear-activation) × len(hidden) blocks; a CVAE has an MLP per branch (note a).
- ``"conv"``: :class:`~collapsekit.models.blocks.ConvEncoder` / ``ConvDecoder`` on the image
  level (notes b, c, f). A hierarchy keeps MLPs between latent levels (note f). A CVAE on
  quadrants (x = bottom-left quadrant, y = the other three, :func:`~collapsekit.data.views.quadrant_split`)
  encodes x as a (side/2)-image and y on a full canvas with the x quadrant blank, decodes z to a
  full image and keeps y's quadrants, and maps x to y with an upsampling conv (note c). A CVAE whose
  y is a full image (x a label, say) uses MLP x-branches and conv y/z-branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from collapsekit.errors import ParameterError
from collapsekit._validation import positive
from collapsekit.models._checks import ACTIVATIONS, count, counts, square_side, std_values
from collapsekit.models.blocks import (ConvDecoder, ConvEncoder, ImageUpsampleDecoder, KeepColumns, LinearDecoder,
                                       LinearEncoder, MLPDecoder, MLPEncoder, QuadrantCanvas, StdSpec,
                                       quadrant_columns)
from collapsekit.models.cvae import CVAE, AdditiveDecoder, AdditiveEncoder
from collapsekit.models.hvae import SHARE_LIKELIHOOD_ETA, HierarchicalVAE
from collapsekit.models.likelihoods import BernoulliLikelihood, GaussianLikelihood
from collapsekit.models.vae import VAE


@dataclass(frozen=True)
class Settings:
    """The validated arguments of :func:`build_model` (also what ``model.config`` records)."""

    kind: str
    arch: str
    x_dim: int
    y_dim: int | None
    image_side: int | None
    latent_dims: tuple[int, ...]
    hidden: tuple[int, ...]
    channels: tuple[int, ...]
    activation: str
    mean_activation: str | None
    out_activation: str | None
    likelihood: str
    eta_enc: float
    eta_dec: float
    learn_eta_dec: bool
    encoder_std: Any
    init_std: Any
    sigma1: Any
    sigma2: Any
    eta_dec_latent: Any


# -- blocks per architecture -------------------------------------------------------------------------
EncoderBuilder = Callable[[Settings, int, int, StdSpec, "int | None", "str | None"], nn.Module]
DecoderBuilder = Callable[[Settings, int, int, "int | None", "str | None"], nn.Module]


def _linear_encoder(s: Settings, in_dim: int, latent: int, std: StdSpec, side: int | None,
                    mean_activation: str | None) -> nn.Module:
    return LinearEncoder(in_dim, latent, std=std, init_std=s.init_std)


def _mlp_encoder(s: Settings, in_dim: int, latent: int, std: StdSpec, side: int | None,
                 mean_activation: str | None) -> nn.Module:
    return MLPEncoder(in_dim, latent, hidden=s.hidden, activation=s.activation, std=std, init_std=s.init_std,
                      mean_activation=mean_activation)


def _conv_encoder(s: Settings, in_dim: int, latent: int, std: StdSpec, side: int | None,
                  mean_activation: str | None) -> nn.Module:
    assert side is not None and side * side == in_dim
    return ConvEncoder(side, latent, channels=s.channels, activation=s.activation, std=std, init_std=s.init_std,
                       mean_activation=mean_activation)


def _linear_decoder(s: Settings, latent: int, out_dim: int, side: int | None, out_activation: str | None) -> nn.Module:
    return LinearDecoder(latent, out_dim)


def _mlp_decoder(s: Settings, latent: int, out_dim: int, side: int | None, out_activation: str | None) -> nn.Module:
    return MLPDecoder(latent, out_dim, hidden=s.hidden, activation=s.activation, out_activation=out_activation)


def _conv_decoder(s: Settings, latent: int, out_dim: int, side: int | None, out_activation: str | None) -> nn.Module:
    assert side is not None and side * side == out_dim
    return ConvDecoder(latent, side, channels=s.channels, activation=s.activation, out_activation=out_activation)


ENCODERS: dict[str, EncoderBuilder] = {"linear": _linear_encoder, "mlp": _mlp_encoder, "conv": _conv_encoder}
DECODERS: dict[str, DecoderBuilder] = {"linear": _linear_decoder, "mlp": _mlp_decoder, "conv": _conv_decoder}
#: The blocks between two latent levels of a hierarchy (the paper's CNN MHVAE has an MLP middle).
LATENT_ARCH: dict[str, str] = {"linear": "linear", "mlp": "mlp", "conv": "mlp"}
#: Likelihoods by name: (η_dec, learn η_dec) → module.
LIKELIHOODS: dict[str, Callable[[float, bool], nn.Module]] = {
    "gaussian": lambda eta_dec, learn: GaussianLikelihood(eta_dec, learn=learn),
    "bernoulli": lambda eta_dec, learn: BernoulliLikelihood(),
}


# -- models per kind -----------------------------------------------------------------------------------
def _one_level(s: Settings) -> int:
    if len(s.latent_dims) != 1:
        raise ParameterError(f"latent_dims: a {s.kind} has one latent level, got {list(s.latent_dims)}")
    return s.latent_dims[0]


def _branch_stds(s: Settings) -> tuple[StdSpec, StdSpec]:
    """(std of each encoder branch, shared std): data-dependent stds live in the branches and add up."""
    return ("data", None) if s.encoder_std == "data" else (None, s.encoder_std)


def _build_vae(s: Settings, likelihood: nn.Module) -> nn.Module:
    d = _one_level(s)
    encoder = ENCODERS[s.arch](s, s.x_dim, d, s.encoder_std, s.image_side, s.mean_activation)
    decoder = DECODERS[s.arch](s, d, s.x_dim, s.image_side, s.out_activation)
    return VAE(encoder, decoder, likelihood, eta_enc=s.eta_enc)


def _cvae_vector(s: Settings, d: int) -> tuple[nn.Module, nn.Module]:
    """Linear or MLP branches on vectors (docs/theory.md §1.2; docs/experiments.md §2, note a)."""
    assert s.y_dim is not None
    branch_std, shared = _branch_stds(s)
    encoder = AdditiveEncoder(ENCODERS[s.arch](s, s.x_dim, d, branch_std, None, s.mean_activation),
                              ENCODERS[s.arch](s, s.y_dim, d, branch_std, None, s.mean_activation),
                              std=shared, init_std=s.init_std)
    decoder = AdditiveDecoder(DECODERS[s.arch](s, s.x_dim, s.y_dim, None, None),
                              DECODERS[s.arch](s, d, s.y_dim, None, None), out_activation=s.out_activation)
    return encoder, decoder


def _cvae_quadrants(s: Settings, d: int) -> tuple[nn.Module, nn.Module]:
    """Paper's CNN CVAE (notes b, c): x a (side/2)-image, y three quadrants of a side-image."""
    assert s.image_side is not None and s.y_dim is not None
    side, half = s.image_side, s.image_side // 2
    branch_std, shared = _branch_stds(s)
    conv = dict(channels=s.channels, activation=s.activation, init_std=s.init_std, mean_activation=s.mean_activation)
    encoder = AdditiveEncoder(ConvEncoder(half, d, std=branch_std, **conv),
                              nn.Sequential(QuadrantCanvas(side), ConvEncoder(side, d, std=branch_std, **conv)),
                              std=shared, init_std=s.init_std, latent_dim=d)
    decoder = AdditiveDecoder(
        ImageUpsampleDecoder(half, s.y_dim, channels=s.channels[0], activation=s.activation),
        KeepColumns(ConvDecoder(d, side, channels=s.channels, activation=s.activation), quadrant_columns(side)),
        out_activation=s.out_activation)
    return encoder, decoder


def _cvae_image_output(s: Settings, d: int) -> tuple[nn.Module, nn.Module]:
    """y a full side×side image, x any vector (a label, say): MLP x-branches, conv y and z branches."""
    assert s.image_side is not None and s.y_dim is not None
    branch_std, shared = _branch_stds(s)
    encoder = AdditiveEncoder(_mlp_encoder(s, s.x_dim, d, branch_std, None, s.mean_activation),
                              _conv_encoder(s, s.y_dim, d, branch_std, s.image_side, s.mean_activation),
                              std=shared, init_std=s.init_std)
    decoder = AdditiveDecoder(_mlp_decoder(s, s.x_dim, s.y_dim, None, None),
                              _conv_decoder(s, d, s.y_dim, s.image_side, None), out_activation=s.out_activation)
    return encoder, decoder


#: How a conv CVAE lays out its images: name → (image side, x_dim, y_dim) test and builder.
CVAEBranches = Callable[[Settings, int], tuple[nn.Module, nn.Module]]
CVAE_CONV_LAYOUTS: dict[str, tuple[Callable[[int, int, int], bool], CVAEBranches]] = {
    "quadrants": (lambda side, dx, dy: side % 2 == 0 and dx == (side // 2) ** 2 and dy == 3 * dx, _cvae_quadrants),
    "image_output": (lambda side, dx, dy: dy == side * side, _cvae_image_output),
}
CVAE_BRANCHES: dict[str, CVAEBranches] = {
    "linear": _cvae_vector, "mlp": _cvae_vector,
    "conv": lambda s, d: CVAE_CONV_LAYOUTS[_conv_cvae_layout(s)][1](s, d),
}


def _conv_cvae_layout(s: Settings) -> str:
    assert s.image_side is not None and s.y_dim is not None
    for name, (fits, _) in CVAE_CONV_LAYOUTS.items():
        if fits(s.image_side, s.x_dim, s.y_dim):
            return name
    half = s.image_side // 2
    raise ParameterError(f"image_side = {s.image_side} fits neither conv CVAE layout: quadrants need x_dim = "
                         f"{half * half} and y_dim = {3 * half * half}, an image output needs y_dim = "
                         f"{s.image_side ** 2} (got x_dim = {s.x_dim}, y_dim = {s.y_dim})")


def _build_cvae(s: Settings, likelihood: nn.Module) -> nn.Module:
    d = _one_level(s)
    encoder, decoder = CVAE_BRANCHES[s.arch](s, d)
    return CVAE(encoder, decoder, likelihood, eta_enc=s.eta_enc, latent_dim=d)


def _build_hvae(s: Settings, likelihood: nn.Module) -> nn.Module:
    dims = s.latent_dims
    if len(dims) < 2:
        raise ParameterError(f"latent_dims: a hierarchy needs at least 2 levels, got {list(dims)}")
    upper = LATENT_ARCH[s.arch]
    encoders = [ENCODERS[s.arch](s, s.x_dim, dims[0], s.sigma1, s.image_side, s.mean_activation)]
    encoders += [ENCODERS[upper](s, dims[i], dims[i + 1], s.sigma2, None, s.mean_activation)
                 for i in range(len(dims) - 1)]
    decoders = [DECODERS[s.arch](s, dims[0], s.x_dim, s.image_side, s.out_activation)]
    # Decoders of latent means get the same squashing as the encoder means they must match (note e).
    decoders += [DECODERS[upper](s, dims[i + 1], dims[i], None, s.mean_activation) for i in range(len(dims) - 1)]
    eta_latent = s.eta_dec if s.eta_dec_latent is None else s.eta_dec_latent
    return HierarchicalVAE(encoders, decoders, likelihood, eta_enc=s.eta_enc, eta_dec_latent=eta_latent)


#: A model family's builder: the validated settings and the likelihood module → the model.
ModelBuilder = Callable[[Settings, nn.Module], nn.Module]


@dataclass(frozen=True)
class ModelFamily:
    """A kind of model :func:`build_model` builds, and what the rest of collapsekit needs to know of it.

    Attributes
    ----------
    kind : str
        Its name: ``build_model(kind, ...)``, ``model.kind`` in a configuration, ``train --model``.
    build : callable
        ``build(settings, likelihood)`` → the model (an ``nn.Module`` whose forward returns a
        :class:`~collapsekit.models.output.ModelOutput`); ``settings`` is :class:`Settings`, validated.
    closed_form : str or None
        The theory's model whose closed forms describe this family (``"vae"``, ``"cvae"``, ``"mhvae"``):
        the reports set that prediction beside the measurement. None: no closed form (no prediction).
    conditional : bool
        The model reconstructs y from x (a CVAE): it needs ``y_dim``, and its data are (x, y) pairs.
    hierarchical : bool
        The model has two or more latent levels (``latent_dims`` bottom to top); otherwise exactly one.
    description : str
        One line, for listings.
    """

    kind: str
    build: ModelBuilder
    closed_form: str | None = None
    conditional: bool = False
    hierarchical: bool = False
    description: str = ""


#: Every model family, by kind. Add one with :func:`register_model_family`.
MODEL_FAMILIES: dict[str, ModelFamily] = {family.kind: family for family in (
    ModelFamily("vae", _build_vae, closed_form="vae", description="VAE: one latent level"),
    ModelFamily("cvae", _build_cvae, closed_form="cvae", conditional=True,
                description="conditional VAE: y from x and one latent level"),
    ModelFamily("hvae", _build_hvae, closed_form="mhvae", hierarchical=True,
                description="hierarchical VAE: L ≥ 2 latent levels"),
)}
#: The built-in kinds (:func:`model_kinds` includes the registered ones).
MODEL_KINDS: tuple[str, ...] = tuple(MODEL_FAMILIES)


def model_kinds() -> tuple[str, ...]:
    """The kinds :func:`build_model` accepts now: the built-in ones and every registered family."""
    return tuple(MODEL_FAMILIES)


def model_family(kind: object) -> ModelFamily:
    """The family called ``kind``; a one-line ParameterError listing the kinds otherwise."""
    if not isinstance(kind, str) or kind not in MODEL_FAMILIES:
        raise ParameterError(f"kind must be one of {list(MODEL_FAMILIES)}, got {kind!r}")
    return MODEL_FAMILIES[kind]


def closed_form(kind: str) -> str | None:
    """The theory's model that describes family ``kind`` (None: no closed form, or an unknown kind)."""
    family = MODEL_FAMILIES.get(kind)
    return None if family is None else family.closed_form


def register_model_family(family: ModelFamily) -> ModelFamily:
    """Add a model family: from then on ``build_model``, configurations (``model.kind``) and ``train --model``
    accept its kind, and the reports name it. Undo with :func:`unregister_model_family`.

    Raises
    ------
    ParameterError
        When the kind is taken (or not a non-empty word).
    """
    if not isinstance(family.kind, str) or not family.kind.isidentifier():
        raise ParameterError(f"a model family's kind must be a word, got {family.kind!r}")
    if family.kind in MODEL_FAMILIES:
        raise ParameterError(f"model family {family.kind!r} is already registered")
    MODEL_FAMILIES[family.kind] = family
    return family


def unregister_model_family(kind: str) -> None:
    """Remove a family :func:`register_model_family` added (the built-in ones stay)."""
    if kind in MODEL_KINDS:
        raise ParameterError(f"{kind!r} is a built-in model family")
    MODEL_FAMILIES.pop(kind, None)
ARCHITECTURES: tuple[str, ...] = tuple(ENCODERS)
LIKELIHOOD_NAMES: tuple[str, ...] = tuple(LIKELIHOODS)


# -- validation ----------------------------------------------------------------------------------------
def _choice(field: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(f"{field} must be one of {list(choices)}, got {value!r}")
    return value


def _std_spec(field: str, value: object, arch: str, dims: Sequence[int]) -> StdSpec:
    """A std setting checked against the architecture and every latent size it applies to."""
    if isinstance(value, str):
        _choice(field, value, ("learnable", "data"))
        if value == "data" and arch == "linear":
            raise ParameterError(f"{field}='data' needs arch 'mlp' or 'conv': the linear theory's encoder std "
                                 "is data-independent ('learnable' or a number)")
        return value
    for d in dims:
        std_values(field, value, d)
    array = np.asarray(value, dtype=float)
    return tuple(float(v) for v in array.ravel()) if array.ndim else float(array)


def _optional_activation(field: str, value: object, arch: str) -> str | None:
    if value is None:
        return None
    if arch == "linear":
        raise ParameterError(f"{field}={value!r}: the linear architecture is the theory's linear model; use 'mlp'")
    return _choice(field, value, ("relu", "tanh", "sigmoid"))


def _image_side(conditional: bool, arch: str, x_dim: int, y_dim: int | None, image_side: object) -> int | None:
    """The image side a conv model needs: given, or inferred from the data sizes."""
    if arch != "conv":  # recorded (data loaders pass it for any model) but unused
        return None if image_side is None else count("image_side", image_side)
    if image_side is not None:
        given = count("image_side", image_side, minimum=4)
        if not conditional and given * given != x_dim:
            raise ParameterError(f"image_side = {given} needs x_dim = {given * given}, got x_dim = {x_dim}")
        return given
    side: int | None
    if conditional:
        assert y_dim is not None
        quadrant = square_side(x_dim)
        side = 2 * quadrant if quadrant and y_dim == 3 * x_dim else square_side(y_dim)
    else:
        side = square_side(x_dim)
    if side is None or side < 4:
        data = f"x_dim = {x_dim}" + ("" if y_dim is None else f", y_dim = {y_dim}")
        raise ParameterError(f"image_side: arch 'conv' needs square images of side ≥ 4 and {data} are not; "
                             "pass image_side or use arch 'mlp'")
    return side


def build_model(kind: str, arch: str, *, x_dim: int, y_dim: int | None = None, image_side: int | None = None,
                latent_dims: int | Sequence[int], hidden: Sequence[int] = (256,), channels: Sequence[int] = (32, 16),
                activation: str = "relu", mean_activation: str | None = None, out_activation: str | None = None,
                likelihood: str = "gaussian", eta_enc: float = 1.0, eta_dec: float = 1.0, learn_eta_dec: bool = False,
                encoder_std: str | float | Sequence[float] = "learnable", init_std: float = 1.0,
                sigma1: str | float | Sequence[float] = 0.5, sigma2: str | float | Sequence[float] = "learnable",
                eta_dec_latent: float | Sequence[float] | str | None = None) -> nn.Module:
    """Build a VAE, CVAE or hierarchical VAE from names and sizes.

    Parameters
    ----------
    kind : {"vae", "cvae", "hvae"} or a registered family (:func:`register_model_family`)
    arch : {"linear", "mlp", "conv"}
        See the module docstring.
    x_dim : int
        Size of x (the input; the target too for "vae" and "hvae").
    y_dim : int, optional
        Size of the CVAE output y; required for "cvae" and refused otherwise.
    image_side : int, optional
        Side of the square images for arch "conv" (the full image of a quadrant CVAE); inferred
        from x_dim (CVAE: from x_dim and y_dim) when omitted.
    latent_dims : int or sequence of int
        One size for "vae"/"cvae"; L ≥ 2 sizes, bottom to top, for "hvae".
    hidden : sequence of int
        Hidden widths of MLP blocks (arch "mlp", and the latent-to-latent blocks of a conv hierarchy).
    channels : (int, int)
        Conv channels c₁, c₂ (arch "conv").
    activation : str
        Hidden nonlinearity.
    mean_activation : None, "relu", "tanh" or "sigmoid"
        Squashes every latent mean: the encoders' and, in a hierarchy, the decoders' predictions of
        lower latents ("relu": the paper's ReLU VAE, note d; "tanh": its MHVAE, note e). In a CVAE it
        squashes each branch's mean before the two are added.
    out_activation : None, "relu", "tanh" or "sigmoid"
        Squashes the decoder's output (a Gaussian mean); must be None for "bernoulli" (logits).
    likelihood : {"gaussian", "bernoulli"}
    eta_enc, eta_dec : float
        Prior std η_enc; decoder std η_dec of the Gaussian likelihood.
    learn_eta_dec : bool
        Learn η_dec (Gaussian only).
    encoder_std : "learnable", "data", float or sequence of float
        Posterior std of a "vae"/"cvae" (see :mod:`collapsekit.models.blocks`); "data" needs arch
        "mlp" or "conv". A data-dependent CVAE std is the sum of the branches' log-variances.
    init_std : float
        Starting value of every learnable encoder std.
    sigma1 : float, "learnable" or "data"
        Std of q(z₁|x) in a hierarchy; fixed σ₁ by default (the paper's MHVAE).
    sigma2 : "learnable", "data" or float
        Std of every upper level q(z_{l+1}|z_l) in a hierarchy.
    eta_dec_latent : float, sequence, "likelihood" or None
        Std of the latent conditionals p(z_l|z_{l+1}); None uses ``eta_dec`` (fixed), as in
        docs/theory.md §1.3. See :class:`~collapsekit.models.hvae.HierarchicalVAE`.

    Returns
    -------
    nn.Module
        A :class:`VAE`, :class:`CVAE` or :class:`HierarchicalVAE`, with ``model.config``: a
        JSON-ready dict such that ``build_model(**model.config)`` builds the same architecture.

    Raises
    ------
    ParameterError
        For unknown names, bad sizes and impossible combinations, naming the field.
    """
    family = model_family(kind)
    arch = _choice("arch", arch, ARCHITECTURES)
    likelihood = _choice("likelihood", likelihood, LIKELIHOOD_NAMES)
    x_dim = count("x_dim", x_dim)
    if family.conditional:
        if y_dim is None:
            raise ParameterError(f"y_dim: a {kind} needs the size of its output y")
        y_dim = count("y_dim", y_dim)
    elif y_dim is not None:
        raise ParameterError(f"y_dim = {y_dim!r} is only used by a cvae, not a {kind}")
    dims = counts("latent_dims", latent_dims)
    if not isinstance(learn_eta_dec, bool):
        raise ParameterError(f"learn_eta_dec must be True or False, got {learn_eta_dec!r}")
    if likelihood == "bernoulli" and learn_eta_dec:
        raise ParameterError("learn_eta_dec=True needs likelihood 'gaussian': a Bernoulli likelihood has no η_dec")
    out = _optional_activation("out_activation", out_activation, arch)
    if likelihood == "bernoulli" and out is not None:
        raise ParameterError(f"out_activation={out!r}: a Bernoulli likelihood takes logits; leave it None")
    if isinstance(eta_dec_latent, str) and eta_dec_latent == SHARE_LIKELIHOOD_ETA and likelihood != "gaussian":
        raise ParameterError("eta_dec_latent='likelihood' needs likelihood 'gaussian'")
    if isinstance(init_std, bool):
        raise ParameterError(f"init_std must be a number, got {init_std!r}")
    settings = Settings(
        kind=kind, arch=arch, x_dim=x_dim, y_dim=y_dim,
        image_side=_image_side(family.conditional, arch, x_dim, y_dim, image_side),
        latent_dims=dims, hidden=counts("hidden", hidden, allow_empty=True), channels=counts("channels", channels),
        activation=_choice("activation", activation, tuple(ACTIVATIONS)),
        mean_activation=_optional_activation("mean_activation", mean_activation, arch), out_activation=out,
        likelihood=likelihood, eta_enc=positive("eta_enc", eta_enc), eta_dec=positive("eta_dec", eta_dec),
        learn_eta_dec=learn_eta_dec, encoder_std=_std_spec("encoder_std", encoder_std, arch, dims[:1]),
        init_std=positive("init_std", init_std),
        sigma1=_std_spec("sigma1", sigma1, arch, dims[:1]),
        sigma2=_std_spec("sigma2", sigma2, LATENT_ARCH[arch], dims[1:]),
        eta_dec_latent=eta_dec_latent)
    if len(settings.channels) != 2:
        raise ParameterError(f"channels must be two sizes (c1, c2), got {list(settings.channels)}")
    model = family.build(settings, LIKELIHOODS[likelihood](settings.eta_dec, learn_eta_dec))
    model.config = _jsonable(asdict(settings))
    return model


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
