"""Is the encoder training? Its means vary across examples, the loss's gradient reaches them, and one step of
the user's optimiser (on the working copy) moves them.

Catches an encoder head left out of the optimiser (the means never move) and an encoder detached from the
loss (no gradient reaches it) — both look like collapse from the outside: the posterior stays where it
was initialised.
"""

from __future__ import annotations

import torch
from torch import Tensor

from collapsekit.checkup.patient import Patient, scalar
from collapsekit.checkup.report import Check
from collapsekit.formatting import cell

NAME = "encoder_training"
#: Posterior means whose spread across examples is below this share of the prior's std are "the same".
MIN_SPREAD = 1e-4
#: A step that moves the means by less than this share of their spread "does not move" them.
MIN_MOVE = 1e-7


def _mean_params(patient: Patient, x: Tensor) -> tuple[bool, list[tuple[str, torch.nn.Parameter]]]:
    """Whether the posterior means carry a gradient at all, and the encoder parameters they depend on."""
    params = [p for _, p in patient.encoder_params]
    with torch.enable_grad():
        loc = patient.posterior(x).loc
        if not loc.requires_grad:
            return False, []
        if not params:
            return True, []
        grads = torch.autograd.grad(loc.sum() + (loc**2).sum(), params, allow_unused=True)
    return True, [(n, p) for (n, p), g in zip(patient.encoder_params, grads)
                  if g is not None and bool(g.abs().sum() > 0)]


def _names(params: list[tuple[str, torch.nn.Parameter]], limit: int = 4) -> str:
    shown = ", ".join(n for n, _ in params[:limit])
    return shown + (f" and {len(params) - limit} more" if len(params) > limit else "")


def check_encoder(patient: Patient) -> Check:
    """Means vary across examples; the loss's gradient reaches the parameters of the means; a step moves them.

    Without ``loss_fn`` only the spread is checked; without an optimiser, the gradient and not the step.
    """
    x = patient.batch_x
    with patient.mode(False), torch.no_grad():
        before = patient.posterior(x).loc.detach().clone()
    spread = float(before.reshape(before.shape[0], -1).std(0).max())
    prior = patient.adapter.prior_std
    evidence: dict[str, object] = {"mean_spread": spread}
    if spread < MIN_SPREAD * prior:
        return Check(NAME, "fail",
                     f"the posterior means are the same for every example (largest spread across examples "
                     f"{cell(spread)}, prior std {cell(prior)}): the encoder ignores its input",
                     "check that the encoder reads x (not a constant or a detached copy) and that its mean head "
                     "is trained", evidence)
    if patient.loss_fn is None:
        return Check(NAME, "ok", f"the posterior means vary across examples (spread up to {cell(spread)}); pass "
                     "loss_fn and optimizer to check that they train", "", evidence)
    with patient.mode(False):
        differentiable, heads = _mean_params(patient, x)
    evidence["mean_parameters"] = [n for n, _ in heads]
    if not differentiable and patient.encoder_params:
        return Check(NAME, "fail", "the posterior means carry no gradient (they are computed under torch.no_grad() "
                     "or detached), so no loss can train them", "remove the .detach() / torch.no_grad() / .data "
                     "on the encoder's mean", evidence)
    for module in patient.networks():
        for p in module.parameters(recurse=False):
            p.grad = None
    with torch.enable_grad():
        loss = patient.call_loss()
        scalar(loss)
        if not (isinstance(loss, Tensor) and loss.requires_grad):
            return Check(NAME, "fail", "loss_fn returned a value without a gradient: nothing it computes can train "
                         "the encoder", "return the loss tensor itself (not .item() or a detached copy)", evidence)
        loss.backward()
    no_grad = [(n, p) for n, p in heads if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    evidence["without_gradient"] = [n for n, _ in no_grad]
    if heads and len(no_grad) == len(heads):
        return Check(NAME, "fail",
                     f"no gradient of the loss reaches the encoder's mean ({_names(no_grad)}): the encoder is "
                     "detached from the loss", "remove the .detach() / torch.no_grad() / .data between the encoder "
                     "and the loss", evidence)
    if patient.optimizer is None:
        status = "warn" if no_grad else "ok"
        return Check(NAME, status, f"the posterior means vary across examples (spread up to {cell(spread)}) and "
                     f"the loss's gradient reaches {len(heads) - len(no_grad)} of the {len(heads)} parameter "
                     "tensors they depend on; pass optimizer to check that a step moves them",
                     "" if status == "ok" else f"{_names(no_grad)} get no gradient: check for a detach", evidence)
    in_optimizer = {id(p) for group in patient.optimizer.param_groups for p in group["params"]}
    missing = [(n, p) for n, p in heads if id(p) not in in_optimizer]
    evidence["not_in_optimizer"] = [n for n, _ in missing]
    try:
        type(patient.optimizer).step(patient.optimizer)
    except Exception as exc:  # noqa: BLE001 — an optimiser needing a closure (LBFGS) and the like
        return Check(NAME, "warn", f"one step of the optimiser failed ({type(exc).__name__}: {exc}); the means vary "
                     f"across examples (spread up to {cell(spread)})", "", evidence)
    with patient.mode(False), torch.no_grad():
        after = patient.posterior(x).loc
    move = float((after - before).abs().max())
    evidence["mean_change"] = move
    if missing:
        return Check(NAME, "fail", f"{_names(missing)} (parameters of the posterior means) "
                     f"{'is' if len(missing) == 1 else 'are'} not in the optimiser (one step moves the means by "
                     f"{cell(move)}, through the rest of the encoder at most)",
                     "give the optimiser all of the encoder's parameters (e.g. torch.optim.Adam(model.parameters()))",
                     evidence)
    if move <= MIN_MOVE * spread:
        return Check(NAME, "fail", f"one optimiser step leaves the posterior means unchanged (largest change "
                     f"{cell(move)})", "check the learning rate, and that the optimiser steps the encoder's "
                     "parameters (e.g. torch.optim.Adam(model.parameters()))", evidence)
    if no_grad:
        return Check(NAME, "warn", f"one optimiser step moves the means by up to {cell(move)}, but "
                     f"{_names(no_grad)} get no gradient from the loss", "let the loss's gradient reach every "
                     "encoder parameter (look for a .detach())", evidence)
    return Check(NAME, "ok", f"the posterior means vary across examples (spread up to {cell(spread)}) and one "
                 f"optimiser step moves them by up to {cell(move)}", "", evidence)
