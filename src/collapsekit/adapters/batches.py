"""Reading the encoder's input out of a batch as users' loaders yield it, and posteriors out of encoders."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from collapsekit.errors import DataError, ParameterError

#: Keys looked up, in order, in a dict batch (torchvision/HF-style loaders).
INPUT_KEYS = ("x", "input", "inputs", "data", "image", "images", "pixel_values", "sample")


def as_tensor(name: str, value: object) -> Tensor:
    """A tensor or numeric array as a tensor (not copied where possible); a one-line DataError otherwise."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value)
    raise DataError(f"{name}: expected a tensor or array, got {type(value).__name__}")


def batch_inputs(batch: object) -> Tensor:
    """The encoder's input of one batch: the batch itself (tensor or array), its first element (a tuple
    or list such as ``(images, labels)``), or the first of :data:`INPUT_KEYS` of a dict."""
    if isinstance(batch, (Tensor, np.ndarray)):
        return as_tensor("batch", batch)
    if isinstance(batch, (tuple, list)) and batch:
        return as_tensor("batch[0]", batch[0])
    if isinstance(batch, dict):
        for key in INPUT_KEYS:
            if key in batch:
                return as_tensor(f"batch[{key!r}]", batch[key])
        raise DataError(f"batch is a dict without any of the keys {', '.join(INPUT_KEYS)}: got "
                        f"{', '.join(map(str, batch)) or 'no keys'}")
    raise DataError(f"cannot read inputs from a batch of type {type(batch).__name__}: expected a tensor, an "
                    "array, a tuple/list (inputs first) or a dict")


def normal_posterior(name: str, encoded: object) -> Normal:
    """A diagonal Normal from an encoder's ``(mu, log_var)``, ``Normal`` or ``Independent(Normal)``."""
    if isinstance(encoded, Independent) and isinstance(encoded.base_dist, Normal):
        encoded = encoded.base_dist
    if isinstance(encoded, Normal):
        return encoded
    if isinstance(encoded, (tuple, list)) and len(encoded) == 2:
        mu, log_var = (torch.as_tensor(v) if isinstance(v, np.ndarray) else v for v in encoded)
        if not (isinstance(mu, Tensor) and isinstance(log_var, Tensor)):
            raise ParameterError(f"{name} returned ({type(mu).__name__}, {type(log_var).__name__}); expected two "
                                 "tensors (mu, log_var)")
        if mu.shape != log_var.shape:
            raise ParameterError(f"{name} returned mu {tuple(mu.shape)} and log_var {tuple(log_var.shape)}; "
                                 "expected the same shape")
        return Normal(mu, torch.exp(0.5 * log_var), validate_args=False)
    raise ParameterError(f"{name} must return (mu, log_var) or a torch.distributions.Normal, got "
                         f"{type(encoded).__name__}")
