"""Theory: for a Gaussian model the closed form's active count beside the measured one.

Applies to collapsekit's own one-level VAE with a Gaussian likelihood; exact for the linear model (at the
optimum of the β-ELBO it minimises), a linear-theory estimate for MLP/conv ones. β is the effective β
the loss was found to apply (:mod:`.effective_beta`) when known, else the one given.
"""

from __future__ import annotations

import torch

from collapsekit.activity import count_active
from collapsekit.adapters import VAEAdapter
from collapsekit.checkup.patient import Patient
from collapsekit.checkup.report import Check
from collapsekit.models import LinearDecoder, LinearEncoder
from collapsekit.models.likelihoods import decoder_eta
from collapsekit.theory import Moments, predict_vae

NAME = "theory"


def unsupported(patient: Patient) -> str | None:
    """Why the closed form does not describe this model, or None when it does."""
    if not isinstance(patient.adapter, VAEAdapter):
        return f"the closed form describes collapsekit's Gaussian VAE, not a {patient.adapter.name}"
    if decoder_eta(patient.adapter.model) is None:
        return "the closed form needs a Gaussian likelihood"
    if patient.x.dim() != 2:
        return "the closed form needs flat (N, D) inputs"
    return None


def check_theory(patient: Patient, beta: float) -> Check:
    """Predicted (closed form at ``beta``) and measured active counts (mean KL ≥ 0.01 nats)."""
    model = patient.adapter.model  # type: ignore[attr-defined]
    eta_dec = decoder_eta(model)
    assert eta_dec is not None
    linear = isinstance(model.encoder, LinearEncoder) and isinstance(model.decoder, LinearDecoder)
    shared = getattr(model.encoder, "shared_std", None)
    fixed = None if shared is None or shared.learnable else shared.std.detach().cpu().numpy()
    with patient.mode(False), torch.no_grad():
        kl = torch.cat([patient.kl_to_prior(patient.posterior(x)).reshape(x.shape[0], -1)
                        for x in patient.chunks()]).mean(0).cpu().numpy()
    measured = count_active(kl)
    d = int(kl.shape[0])
    moments = Moments.from_data(patient.target(patient.x).reshape(patient.x.shape[0], -1).cpu().double().numpy())
    if d > moments.d_x:
        return Check(NAME, "ok", f"{measured} of {d} dimensions active; the closed form needs d ≤ D", "",
                     {"measured_active": measured})
    prediction = predict_vae(moments, d, beta=beta, eta_enc=patient.adapter.prior_std, eta_dec=eta_dec,
                             encoder_std=fixed)
    predicted = prediction.n_active_headline
    kind = "exact" if linear else "a linear-theory estimate"
    evidence = {"predicted_active": predicted, "measured_active": measured, "beta": beta, "eta_dec": eta_dec,
                "exact": linear, "predicted_kl_per_dim": prediction.kl_per_dim.tolist(),
                "measured_kl_per_dim": sorted(kl.tolist(), reverse=True)}
    text = (f"the closed form at β = {beta:.4g}, η_dec = {eta_dec:.4g} ({kind}) predicts {predicted} of {d} "
            f"dimensions active; {measured} are measured")
    if predicted == measured:
        return Check(NAME, "ok", text, "", evidence)
    if linear:
        return Check(NAME, "warn", f"{text}: the model is not at the optimum of the loss it minimises",
                     "train longer (or with a larger learning rate); if it is converged, the loss's β is not the β "
                     "the theory was given: see effective_beta", evidence)
    return Check(NAME, "ok", f"{text} (for a nonlinear model the closed form is an estimate: a difference is "
                 "expected)", "", evidence)
