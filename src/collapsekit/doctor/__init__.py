"""``collapsekit doctor``: the quick checks that tell a bug from a posterior collapse (issue 12 §2).

>>> from collapsekit.doctor import doctor
>>> report = doctor(model, data, loss_fn, optimizer)      # doctest: +SKIP
>>> [(c.name, c.status) for c in report.checks]           # doctest: +SKIP

One module per check: :mod:`.effective_beta`, :mod:`.decoder_use`, :mod:`.encoder`, :mod:`.schedule`,
:mod:`.regularisation`, :mod:`.theory`; :mod:`.patient` is the model as the checks see it,
:mod:`.state` keeps the user's things as found, :mod:`.report` the result, :mod:`.api` the entry point.
See docs/doctor.md.
"""

import sys
import types
from typing import Any

from collapsekit.doctor.api import CHECKS, doctor
from collapsekit.doctor.report import STATUSES, Check, DoctorReport, Skipped

__all__ = ["CHECKS", "STATUSES", "Check", "DoctorReport", "Skipped", "doctor"]


class _CallableModule(types.ModuleType):
    """``collapsekit.doctor`` is both this package and the function: once the package is imported, Python binds
    ``collapsekit.doctor`` to it, so calling the package calls :func:`doctor`."""

    def __call__(self, *args: Any, **kwargs: Any) -> DoctorReport:
        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
