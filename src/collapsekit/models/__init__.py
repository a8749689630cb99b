"""Models: encoders, decoders and likelihoods composed into VAEs, CVAEs and hierarchical VAEs.

A model's forward pass returns distributions (:class:`ModelOutput`); losses live in
``collapsekit.objectives``, so every objective applies to every model.

>>> from collapsekit.models import build_model
>>> model = build_model("vae", "linear", x_dim=64, latent_dims=[8], eta_dec=0.5)
>>> out = model(torch.rand(32, 64), n_samples=4)                # doctest: +SKIP
>>> out.likelihood.log_prob(out.target).shape                    # doctest: +SKIP
torch.Size([4, 32])

Bring your own blocks: an encoder maps (..., D) to ``(mu, log_var)`` (each (..., d)), a decoder
maps z (..., d) to the likelihood's input (..., D); a CVAE's encoder takes ``(x, y)`` and its
decoder ``(x, z)``. See :mod:`collapsekit.models.blocks`.
"""

from collapsekit.models.blocks import (ConvDecoder, ConvEncoder, ImageUpsampleDecoder, KeepColumns, LinearDecoder,
                                       LinearEncoder, MLPDecoder, MLPEncoder, QuadrantCanvas, SharedStd,
                                       quadrant_columns)
from collapsekit.models.cvae import CVAE, AdditiveDecoder, AdditiveEncoder
from collapsekit.models.hvae import HierarchicalVAE
from collapsekit.models.likelihoods import BernoulliLikelihood, GaussianLikelihood, IsotropicGaussian
from collapsekit.models.output import LatentLevel, ModelOutput
from collapsekit.models.registry import (ARCHITECTURES, LIKELIHOOD_NAMES, MODEL_FAMILIES, MODEL_KINDS, ModelFamily,
                                        build_model, model_kinds, register_model_family, unregister_model_family)
from collapsekit.models.vae import VAE

__all__ = [
    "ARCHITECTURES", "LIKELIHOOD_NAMES", "MODEL_FAMILIES", "MODEL_KINDS", "AdditiveDecoder", "AdditiveEncoder",
    "BernoulliLikelihood",
    "CVAE", "ConvDecoder", "ConvEncoder", "GaussianLikelihood", "HierarchicalVAE", "ImageUpsampleDecoder",
    "IsotropicGaussian",
    "KeepColumns", "LatentLevel", "LinearDecoder", "LinearEncoder", "MLPDecoder", "MLPEncoder", "ModelFamily",
    "ModelOutput", "QuadrantCanvas", "SharedStd", "VAE", "build_model", "model_kinds", "quadrant_columns",
    "register_model_family", "unregister_model_family",
]
