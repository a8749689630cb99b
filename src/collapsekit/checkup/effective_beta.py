"""Effective β: the weight the user's loss really gives the KL, per nat of log-likelihood per example.

The loss is evaluated at the parameters as found and after small random perturbations of the decoder's
parameters (which move the reconstruction only) and of the encoder's (which move the KL, and the
reconstruction through z), each time with the same encoder noise (the generators reset before each
call). Each time the doctor also measures, on the very z the user's decoder received (a hook on its
entry), R = −log p(x | z) and K = KL(q(z|x) ‖ p(z)), both averaged over the examples, and fits

    loss = a · R + b · K + c

by least squares: β_eff = b / a. A loss that is exactly a β-ELBO fits to rounding error; K is tried both
analytic and as the single-sample estimate log q(z|x) − log p(z) at the captured z, whichever fits.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Normal

from collapsekit.checkup.patient import Patient
from collapsekit.checkup.report import Check
from collapsekit.formatting import cell

NAME = "effective_beta"
#: Relative sizes of the parameter perturbations (of each tensor's RMS): the decoder's, the encoder's.
DECODER_STEPS = (0.02, -0.02, 0.04)
ENCODER_STEPS = (0.1, -0.1, 0.2)
#: β_eff within this factor of the intended β is ok.
TOLERANCE = 1.25
#: A fit whose residual exceeds this share of the loss's spread: the loss is not a · R + b · K + c.
MAX_RESIDUAL = 0.05


def _measure(patient: Patient, captured: list[Tensor]) -> tuple[float, float, float] | None:
    """R, K analytic, K single-sample at the captured z (None when the decoder's input was not seen)."""
    if not captured:
        return None
    x = patient.batch_x
    target = patient.target(x)
    with torch.no_grad():
        q = patient.posterior(x)
        latent = q.loc.shape[1:]
        valid = [c.reshape(-1, *latent) for c in captured if c.numel() % q.loc.numel() == 0]
        if not valid:
            return None
        z = torch.cat(valid)
        k = z.shape[0] // x.shape[0]
        recon = -patient.log_likelihood(z, target).mean()
        kl = patient.kl_to_prior(q).reshape(x.shape[0], -1).sum(1).mean()
        reps = (k,) + (1,) * len(latent)
        rep = Normal(q.loc.repeat(reps), q.scale.repeat(reps))
        prior = Normal(torch.zeros_like(z), torch.full_like(z, patient.adapter.prior_std))
        mc = (rep.log_prob(z) - prior.log_prob(z)).reshape(z.shape[0], -1).sum(1).mean()
    return float(recon), float(kl), float(mc)


def _perturb(params: list[tuple[str, torch.nn.Parameter]], size: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        for _, p in params:
            scale = float(p.detach().float().pow(2).mean().sqrt()) or 1e-2
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.device, p.dtype)
            p.add_(noise * (size * scale))


def _fit(loss: np.ndarray, recon: np.ndarray, kl: np.ndarray) -> tuple[float, float, float, float]:
    """(a, b, relative residual, standard error of b) of the least-squares fit loss = a·R + b·K + c."""
    design = np.column_stack([recon, kl, np.ones_like(recon)])
    coef, *_ = np.linalg.lstsq(design, loss, rcond=None)
    residual = loss - design @ coef
    spread = float(np.std(loss)) or 1.0
    # the residual's scale, at least the loss's float32 rounding (a β-ELBO fits to rounding error)
    noise = max(float(np.sum(residual**2)) / max(1, len(loss) - 3), (6e-8 * float(np.max(np.abs(loss))))**2)
    try:
        se_b = float(np.sqrt(noise * np.linalg.inv(design.T @ design)[1, 1]))
    except np.linalg.LinAlgError:
        se_b = math.inf
    return float(coef[0]), float(coef[1]), float(np.sqrt(np.mean(residual**2)) / spread), se_b


def _cause(ratio: float, features: int, latents: int, batch: int) -> str | None:
    """The reduction bug whose factor ``ratio`` (β_eff / intended β) matches within 15%."""
    candidates = {
        "the reconstruction is averaged over the D = {D} features where the KL is summed (a β·D model)": features,
        "a squared error averaged over the D = {D} features, without the ½ of a Gaussian log-density (β·D/2)":
            features / 2,
        "the KL is averaged over the d = {d} latent dimensions instead of summed": 1 / latents,
        "the KL is summed over the batch of {B} where the reconstruction is averaged": batch,
        "the KL is averaged over the batch of {B} where the reconstruction is summed": 1 / batch,
        "a squared error in place of the Gaussian log-density (no ½, or a decoder std other than 1)": 0.5,
    }
    best = None
    for text, factor in candidates.items():
        if factor > 0 and factor != 1 and abs(math.log(ratio / factor)) < math.log(1.15):
            if best is None or abs(math.log(ratio / factor)) < best[1]:
                best = (text.format(D=features, d=latents, B=batch), abs(math.log(ratio / factor)))
    return None if best is None else best[0]


def check_effective_beta(patient: Patient, intended: float | None) -> Check:
    """Fit the loss's weights on R and K (see the module docstring) and compare β_eff with the intended β.

    Parameters
    ----------
    patient : Patient
        With ``loss_fn``; dissected (encoder/decoder parameters and the decoder's entry known).
    intended : float, optional
        The β the user meant (``doctor(beta=...)``, else the adapter's); None: the ELBO's 1 is assumed,
        and only a factor that names a known reduction bug fails.
    """
    if patient.entry is None:
        return Check(NAME, "warn", "the doctor could not see the z the decoder receives (no module of the decoder "
                     "takes z as an argument), so it cannot weigh the loss's terms",
                     "expose the decoder as an nn.Module that takes z (adapter.decode should call it with z)")
    if not patient.encoder_params or not patient.decoder_params:
        return Check(NAME, "warn", "the doctor found no trainable encoder or decoder parameters to vary",
                     "make the encoder and decoder nn.Modules reachable from adapter.modules()")
    generator = torch.Generator().manual_seed(patient.seed)
    saved = {id(p): p.detach().clone() for _, p in patient.encoder_params + patient.decoder_params}
    plans = [(None, 0.0)] + [("decoder", s) for s in DECODER_STEPS] + [("encoder", s) for s in ENCODER_STEPS]
    rows = []
    try:
        with patient.mode(False):
            for group, size in plans:
                if group is not None:
                    _perturb(patient.decoder_params if group == "decoder" else patient.encoder_params, size,
                             generator)
                with patient.capture() as captured:
                    loss = patient.loss()
                measured = _measure(patient, captured)
                if measured is None:
                    return Check(NAME, "warn", "the user's loss_fn never passed this batch's z to the decoder the "
                                 "adapter decodes with, so its terms cannot be weighed",
                                 "loss_fn(model, batch) must run the model it is given on the batch it is given")
                rows.append((loss, *measured))
                with torch.no_grad():
                    for _, p in patient.encoder_params + patient.decoder_params:
                        p.copy_(saved[id(p)])
    finally:
        with torch.no_grad():
            for _, p in patient.encoder_params + patient.decoder_params:
                p.copy_(saved[id(p)])
    loss, recon, kl, mc = (np.asarray(c, dtype=np.float64) for c in zip(*rows))
    fits = {"analytic": _fit(loss, recon, kl), "single-sample": _fit(loss, recon, mc)}
    estimator = min(fits, key=lambda k: fits[k][2])
    a, b, residual, se_b = fits[estimator]
    x = patient.batch_x
    features = int(patient.target(x)[0].numel())
    latents = int(patient.posterior(x[:1]).loc[0].numel())
    evidence = {"effective_beta": None, "recon_weight": a, "kl_weight": b, "fit_residual": residual,
                "kl_estimator": estimator, "intended_beta": intended, "features": features, "latents": latents}
    if not (a > 0 and residual <= MAX_RESIDUAL):
        return Check(NAME, "warn",
                     f"the loss is not a multiple of −log p(x|z) of the decoder's distribution plus a KL term "
                     f"(fit: {cell(a)}·R + {cell(b)}·KL, residual {100 * residual:.0f}% of its spread)",
                     "if the loss uses another reconstruction (L1, perceptual, a fixed-scale MSE), give the adapter "
                     "the likelihood it stands for; the theory's β is then undefined", evidence)
    stand_in = next((n for n in patient.adapter.notes if n.startswith("likelihood stand-in")), None)
    if stand_in is not None:
        return _against_stand_in(b, a, 3 * se_b, intended, estimator, evidence)
    beta, resolution = b / a, 3 * se_b / a
    if abs(beta) < resolution:
        beta = 0.0 if abs(beta) < 1e-12 else beta
    evidence.update({"effective_beta": beta, "resolution": resolution})
    meant = 1.0 if intended is None else intended
    if abs(beta - meant) <= resolution:                  # the loss cannot tell them apart: as meant
        beta_text = f"{cell(beta)} ± {cell(resolution)}"
        return Check(NAME, "ok", f"the loss weighs the KL by β_eff = {beta_text} per nat of log-likelihood per "
                     f"example ({estimator} KL), as meant (β = {cell(meant)}); the theory should use β = "
                     f"{cell(meant)}", "", evidence)
    said = f"β = {cell(meant)}" + (" (the ELBO; pass beta= to say otherwise)" if intended is None else "")
    head = (f"the loss weighs the KL by β_eff = {cell(beta)} per nat of log-likelihood per example "
            f"({cell(a)}·(−log p) + {cell(b)}·KL, {estimator} KL, fit residual {100 * residual:.1g}%)")
    theory = f"; the theory should use β = {cell(beta)}"
    if meant > 0 and abs(beta) < max(1e-3 * meant, resolution):
        return Check(NAME, "fail", f"{head}: the KL weight is never applied, where you meant {said}",
                     "multiply the KL term by β in the loss the optimiser minimises (and check that the term is "
                     "added at all)", evidence)
    if meant == 0:
        return Check(NAME, "fail", f"{head}, where you meant β = 0 (no KL term){theory}",
                     "remove the KL term, or say the β you mean (beta=)", evidence)
    ratio = beta / meant
    if 1 / TOLERANCE <= ratio <= TOLERANCE:
        return Check(NAME, "ok", f"{head}, as meant ({said}){theory}", "", evidence)
    cause = _cause(ratio, features, latents, x.shape[0]) if math.isfinite(ratio) else None
    evidence["cause"] = cause
    status = "fail" if intended is not None or cause is not None else "warn"
    why = f": {cause}" if cause else ""
    return Check(NAME, status, f"{head}, {cell(ratio)}× the {said}{why}{theory}",
                 "sum the reconstruction's log-density over features and the KL over latent dimensions, average "
                 "both over the batch, and weigh the KL by β" if cause else
                 f"set the KL weight so that β_eff is what you mean, or use β = {cell(beta)} when reading the "
                 "theory", evidence)


def _against_stand_in(b: float, a: float, resolution: float, intended: float | None, estimator: str,
                      evidence: dict[str, object]) -> Check:
    """A decoder without a likelihood (a stated stand-in): β is not defined, so the KL's weight in the loss's own
    units (b) is compared with the one meant; β_eff against the stand-in is reported, not judged."""
    evidence.update({"effective_beta": b / a, "resolution": resolution / a, "stand_in": True})
    head = (f"the loss weighs the KL by {cell(b)} in its own units ({estimator} KL; β_eff = {cell(b / a)} per nat "
            "of the stand-in likelihood, which the decoder was not trained with: a β is not defined)")
    if intended is not None and intended > 0 and abs(b) < max(1e-3 * intended, resolution):
        return Check(NAME, "fail", f"{head}: the KL weight is never applied, where you meant {cell(intended)}",
                     "multiply the KL term by its weight in the loss the optimiser minimises", evidence)
    if intended is None or abs(b - intended) <= max(resolution, (TOLERANCE - 1) * intended):
        return Check(NAME, "ok", head + ("" if intended is None else f", as meant ({cell(intended)})"), "", evidence)
    return Check(NAME, "warn", f"{head}, {cell(b / intended)}× the {cell(intended)} you meant",
                 "check the KL term's reduction (sum over latent elements, mean over the batch) and its weight",
                 evidence)
