"""``collapsekit.doctor`` (the function): run the checks on a copy of the user's model, leave everything as found."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from collapsekit._validation import non_negative
from collapsekit.adapters import as_adapter
from collapsekit.checkup.decoder_use import check_decoder_uses_z
from collapsekit.checkup.effective_beta import check_effective_beta
from collapsekit.checkup.encoder import check_encoder
from collapsekit.checkup.patient import Patient, gather
from collapsekit.checkup.regularisation import check_regularisation
from collapsekit.checkup.report import Check, DoctorReport, Skipped
from collapsekit.checkup.schedule import check_schedule
from collapsekit.checkup.state import model_device, preserved_random_state, working_copy
from collapsekit.checkup.theory import check_theory, unsupported
from collapsekit.errors import ParameterError

#: The checks, in the order they run and print.
CHECKS = ("effective_beta", "decoder_uses_z", "encoder_training", "schedule", "regularisation", "theory")


def doctor(model: object, data: object, loss_fn: Callable[[Any, Any], Tensor] | None = None,
           optimizer: torch.optim.Optimizer | None = None, *, beta: float | None = None, schedule: Any = None,
           total_steps: int | None = None, checks: Sequence[str] | None = None, examples: int = 512,
           batch_size: int = 128, seed: int = 0, adapter_options: Mapping[str, Any] | None = None) -> DoctorReport:
    """Check a VAE for the bugs that look like posterior collapse, on the model's own device.

    Every check runs on a deep copy of ``model`` and ``optimizer`` (taken together, so the copied
    optimiser holds the copied parameters): the user's model, optimiser and gradients are never touched,
    and the Python, numpy and torch (CPU and the model's CUDA device) random states are restored.

    Parameters
    ----------
    model : object
        Anything :func:`collapsekit.adapters.as_adapter` takes: collapsekit's VAE/CVAE, ``(encoder,
        decoder)``, a Pythae or diffusers model, or an adapter.
    data : array, tensor, DataLoader or iterable of batches
        The first batch is what ``loss_fn`` gets; up to ``examples`` examples (a few batches) are measured.
        An array or tensor is cut into batches of ``batch_size`` rows.
    loss_fn : callable, optional
        ``loss_fn(model, batch) -> scalar tensor``: the value the user's optimiser minimises, called as is
        with the model it is given (the doctor passes its copy) and one batch as ``data`` yields it. It must
        run that model's encoder and decoder on the batch and draw its noise from torch's generator.
        Without it, the effective β is not measured and the encoder check skips the optimiser step.
    optimizer : torch.optim.Optimizer, optional
        The user's optimiser; one step is taken on its copy.
    beta : float, optional
        The KL weight meant (default: the adapter's, else the ELBO's 1).
    schedule : Schedule, CollapseMonitor, ScheduleInfo or dict, optional
        The KL schedule (and ``total_steps``, the planned run's optimiser steps) for the schedule check.
    total_steps : int, optional
        Optimiser steps of the planned run.
    checks : sequence of str, optional
        A subset of :data:`CHECKS` (default: all that apply).
    examples, batch_size : int
        Examples measured (default 512); rows per batch for array data (default 128).
    seed : int
        Seed of the doctor's own noise and of the encoder noise ``loss_fn`` draws.
    adapter_options : mapping, optional
        Passed to :func:`~collapsekit.adapters.as_adapter` (e.g. ``{"prior_std": 1.0}``).

    Returns
    -------
    DoctorReport
        One :class:`~collapsekit.checkup.report.Check` per check that ran (ok / warn / fail, evidence,
        fix), and the skipped ones with their reason.

    Raises
    ------
    ParameterError, DataError
        One line, for an unknown check, a model no adapter takes, a loss_fn that does not return a scalar,
        data that yields no batch.
    """
    wanted = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise ParameterError(f"unknown check(s) {', '.join(map(repr, unknown))}: choose from {', '.join(CHECKS)}")
    if loss_fn is not None and not callable(loss_fn):
        raise ParameterError(f"loss_fn must be callable (loss_fn(model, batch) -> scalar), got "
                             f"{type(loss_fn).__name__}")
    if beta is not None:
        beta = non_negative("beta", beta)
    examples, batch_size = _count("examples", examples, 2), _count("batch_size", batch_size, 1)
    adapter = as_adapter(model, **dict(adapter_options or {}))
    device = model_device(list(adapter.modules()))
    with preserved_random_state(device):
        copy_model, copy_optimizer, copy_adapter = working_copy(model, optimizer, adapter)
        if copy_adapter is adapter:        # an adapter passed as the model: the copy is its own
            copy_adapter = copy_model
        first, x = gather(copy_adapter, data, examples=examples, batch_size=batch_size, device=device)
        patient = Patient(copy_model, copy_adapter, copy_optimizer, loss_fn, first, x, device, seed)
        with patient.mode(False), torch.no_grad():
            patient.dissect()
        report = DoctorReport(model=adapter.name, notes=list(copy_adapter.notes))
        report.notes.append(f"{x.shape[0]} examples on {device}; the checks ran on a copy of the model")
        intended = beta if beta is not None else adapter.beta
        theory_beta = intended
        likelihood = patient.has_likelihood()

        def skip(name: str, reason: str) -> None:
            report.skipped.append(Skipped(name, reason))

        for name in wanted:
            if name == "effective_beta":
                if loss_fn is None:
                    skip(name, "no loss_fn given")
                elif not likelihood:
                    skip(name, "the model has no likelihood to weigh the loss against")
                else:
                    check = check_effective_beta(patient, intended)
                    report.checks.append(check)
                    if check.evidence.get("effective_beta") is not None:
                        theory_beta = float(check.evidence["effective_beta"])
            elif name == "decoder_uses_z":
                if likelihood:
                    report.checks.append(check_decoder_uses_z(patient))
                else:
                    skip(name, "the model has no likelihood")
            elif name == "encoder_training":
                pass                                           # last: its optimiser step changes the copy
            elif name == "schedule":
                if schedule is None:
                    skip(name, "no schedule given")
                else:
                    report.checks.append(check_schedule(schedule, total_steps))
            elif name == "regularisation":
                report.checks.append(check_regularisation(patient))
            elif name == "theory":
                reason = unsupported(patient)
                if reason is None and theory_beta is None:
                    reason = "β unknown: pass loss_fn (its effective β is used) or beta="
                if reason is not None:
                    skip(name, reason)
                else:
                    report.checks.append(check_theory(patient, float(theory_beta)))
        if "encoder_training" in wanted:
            report.checks.insert(min(len(report.checks), _position(report.checks, wanted)), check_encoder(patient))
    return report


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _position(done: list[Check], wanted: list[str]) -> int:
    """Where the encoder check goes so that the report keeps the order of :data:`CHECKS`."""
    before = set(wanted[: wanted.index("encoder_training")])
    return sum(1 for c in done if c.name in before)
