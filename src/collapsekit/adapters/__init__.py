"""Adapters: one protocol through which collapsekit diagnoses models it did not build.

>>> from collapsekit.adapters import as_adapter
>>> adapter = as_adapter(model)                    # doctest: +SKIP
>>> q = adapter.posterior(adapter.inputs(batch))   # doctest: +SKIP

Built in, asked in this order: collapsekit's VAE and CVAE, a pair ``(encoder, decoder)`` of callables,
Pythae's Gaussian VAE family (:mod:`.pythae`) and diffusers' ``AutoencoderKL`` (:mod:`.diffusers`). Add a
family with :func:`register_adapter`; a registered family is asked before the built-in ones. Third-party
libraries are imported only when one of their models is adapted.
"""

from collapsekit.adapters.batches import INPUT_KEYS, batch_inputs, normal_posterior
from collapsekit.adapters.native import (CVAEAdapter, FunctionAdapter, VAEAdapter, from_native, from_pair,
                                         is_callable_pair, is_native)
from collapsekit.adapters.protocol import ModelAdapter, likelihood_target
from collapsekit.adapters.registry import (ADAPTERS, AdapterEntry, adapter_names, as_adapter, find_adapter,
                                           register_adapter, unregister_adapter)



def _pythae(model: object, **options: object) -> ModelAdapter:
    from collapsekit.adapters.pythae import from_pythae

    return from_pythae(model, **options)  # type: ignore[arg-type]


def _diffusers(model: object, **options: object) -> ModelAdapter:
    from collapsekit.adapters.diffusers import from_diffusers

    return from_diffusers(model, **options)  # type: ignore[arg-type]


def _is_pythae(model: object) -> bool:
    from collapsekit.adapters.pythae import is_pythae_model

    return is_pythae_model(model)


def _is_autoencoder_kl(model: object) -> bool:
    from collapsekit.adapters.diffusers import is_autoencoder_kl

    return is_autoencoder_kl(model)


# Asked last registered first: a user's family, then these.
register_adapter("diffusers AutoencoderKL", _is_autoencoder_kl, _diffusers)
register_adapter("pythae VAE family", _is_pythae, _pythae)
register_adapter("callables (encoder, decoder)", is_callable_pair, from_pair)
register_adapter("collapsekit VAE/CVAE", is_native, from_native)

__all__ = ["ADAPTERS", "INPUT_KEYS", "AdapterEntry", "CVAEAdapter", "FunctionAdapter", "ModelAdapter", "VAEAdapter",
           "adapter_names", "as_adapter", "batch_inputs", "find_adapter", "likelihood_target", "normal_posterior",
           "register_adapter", "unregister_adapter"]
