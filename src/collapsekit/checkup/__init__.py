"""The checks behind ``collapsekit.doctor`` and ``collapsekit doctor``: quick checks that tell a bug from a
posterior collapse (issue 12 §2). The package is not named ``doctor`` so that ``collapsekit.doctor`` stays the function.

>>> import collapsekit
>>> report = collapsekit.doctor(model, data, loss_fn, optimizer)      # doctest: +SKIP
>>> [(c.name, c.status) for c in report.checks]           # doctest: +SKIP

One module per check: :mod:`.effective_beta`, :mod:`.decoder_use`, :mod:`.encoder`, :mod:`.schedule`,
:mod:`.regularisation`, :mod:`.theory`; :mod:`.patient` is the model as the checks see it,
:mod:`.state` keeps the user's things as found, :mod:`.report` the result, :mod:`.api` the entry point.
See docs/doctor.md.
"""

from collapsekit.checkup.api import CHECKS, doctor
from collapsekit.checkup.report import STATUSES, Check, DoctorReport, Skipped

__all__ = ["CHECKS", "STATUSES", "Check", "DoctorReport", "Skipped", "doctor"]

