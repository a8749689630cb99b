"""Adapters: one protocol through which collapsekit diagnoses models it did not build.

>>> from collapsekit.adapters import as_adapter
>>> adapter = as_adapter(model)                    # doctest: +SKIP
>>> q = adapter.posterior(adapter.inputs(batch))   # doctest: +SKIP

Built in, asked in this order: collapsekit's VAE and CVAE (``"collapsekit"``), a pair ``(encoder,
decoder)`` of callables (``"callables"``). Add a family with :func:`register_adapter`; a registered
family is asked before the built-in ones. Third-party libraries are imported only when one of their
models is adapted.
"""

from collapsekit.adapters.batches import INPUT_KEYS, batch_inputs, normal_posterior
from collapsekit.adapters.native import (CVAEAdapter, FunctionAdapter, VAEAdapter, from_native, from_pair,
                                         is_callable_pair, is_native)
from collapsekit.adapters.protocol import ModelAdapter, likelihood_target
from collapsekit.adapters.registry import (ADAPTERS, AdapterEntry, adapter_names, as_adapter, find_adapter,
                                           register_adapter, unregister_adapter)

register_adapter("callables (encoder, decoder)", is_callable_pair, from_pair)
register_adapter("collapsekit VAE/CVAE", is_native, from_native)

__all__ = ["ADAPTERS", "INPUT_KEYS", "AdapterEntry", "CVAEAdapter", "FunctionAdapter", "ModelAdapter", "VAEAdapter",
           "adapter_names", "as_adapter", "batch_inputs", "find_adapter", "likelihood_target", "normal_posterior",
           "register_adapter", "unregister_adapter"]
