"""A second device on a machine with a CPU only: tensors that say they are on ``meta`` but hold CPU data.

Inside ``with FakeDevice():`` a tensor moved to ``meta`` (``.to("meta")``, ``module.to("meta")``, a factory
call with ``device="meta"``) is a :class:`OnDevice` tensor: every operation on it runs on the CPU data it
wraps and gives ``OnDevice`` tensors back, a host read (``item``, ``bool``, ``.cpu()``) works as it does on a
GPU (``tolist`` too), and, as on a GPU, an operation that mixes it with a CPU tensor of one element or more raises
:class:`DeviceMix` (0-d CPU tensors mix, as CUDA allows). ``.numpy()`` raises, as on a GPU. Code that
keeps data on the device of its inputs runs and gives the CPU's numbers; code that moves a batch to the CPU
and feeds it to a network on the device fails, which is what the tests catch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map

FAKE = torch.device("meta")


class DeviceMix(RuntimeError):
    """An operation mixed a tensor on the fake device with a CPU tensor."""


class OnDevice(torch.Tensor):
    """A tensor on the fake device: reports ``meta``, holds ``inner`` (CPU)."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> "OnDevice":
        wrapper = torch.Tensor._make_wrapper_subclass(cls, inner.shape, strides=inner.stride(), dtype=inner.dtype,
                                                      device=FAKE, requires_grad=inner.requires_grad,
                                                      storage_offset=inner.storage_offset())
        wrapper.inner = inner
        return wrapper

    def __repr__(self) -> str:                                    # no host copy for a repr
        return f"OnDevice(shape={tuple(self.shape)}, dtype={self.dtype})"

    def tolist(self) -> Any:                                      # a host read, as on a GPU
        return self.cpu().tolist()

    def new_tensor(self, data: Any, dtype: torch.dtype | None = None, device: Any = None,
                   requires_grad: bool = False) -> torch.Tensor:
        """Like ``torch.tensor``, it builds below the dispatcher: made here on the fake device."""
        made = torch.tensor(data, dtype=dtype or self.dtype)
        return made if device is not None and not _is_fake_device(device) else OnDevice(made)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):   # outside the mode: refuse
        raise DeviceMix(f"{func} on a fake-device tensor outside FakeDevice()")


def _is_fake_device(value: Any) -> bool:
    return value is not None and torch.device(value).type == "meta"


def _from_data(original: Any) -> Any:
    """``torch.tensor`` / ``torch.as_tensor`` that make an :class:`OnDevice` for ``device="meta"``: they
    build their tensor below the dispatcher, where a mode cannot see it."""

    def make(data: Any, *args: Any, device: Any = None, **kwargs: Any) -> torch.Tensor:
        if isinstance(data, OnDevice) or not _is_fake_device(device):
            return original(data, *args, device=device, **kwargs)
        return OnDevice(original(data, *args, device="cpu", **kwargs))

    return make


class FakeDevice(TorchDispatchMode):
    """The mode that runs :class:`OnDevice` tensors (module docstring)."""

    def __enter__(self) -> "FakeDevice":
        self._saved = torch.tensor, torch.as_tensor
        torch.tensor, torch.as_tensor = _from_data(torch.tensor), _from_data(torch.as_tensor)
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        torch.tensor, torch.as_tensor = self._saved
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        flat, _ = tree_flatten((args, kwargs))
        on_device = any(isinstance(t, OnDevice) for t in flat)
        name = func.overloadpacket.__name__
        if name == "numpy" or (name == "_to_copy" and not on_device and not _is_fake_device(kwargs.get("device"))):
            return func(*args, **kwargs)
        mixed = [t for t in flat if isinstance(t, torch.Tensor) and not isinstance(t, OnDevice) and t.dim() > 0]
        if on_device and mixed and name not in ("_to_copy", "copy_"):
            raise DeviceMix(f"{func}: a tensor on the device mixed with a CPU tensor of shape {tuple(mixed[0].shape)}")
        made_here = _is_fake_device(kwargs.get("device"))
        if made_here:
            kwargs["device"] = torch.device("cpu")
        target = kwargs.get("device")
        to_cpu = name == "_to_copy" and target is not None and torch.device(target).type == "cpu"
        inners = {}

        def unwrap(value: Any) -> Any:
            if isinstance(value, OnDevice):
                inners[id(value.inner)] = value
                return value.inner
            return value

        with _disable_current_modes():
            out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
        if to_cpu and not made_here:
            return out                                            # .cpu() / .to("cpu"): a plain CPU tensor
        if not (on_device or made_here):
            return out

        def wrap(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and not isinstance(value, OnDevice):
                same = inners.get(id(value))                      # an in-place result is its input
                return same if same is not None else OnDevice(value)
            return value

        return tree_map(wrap, out)
