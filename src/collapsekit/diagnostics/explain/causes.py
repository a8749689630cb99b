"""One function per cause of a collapse: each returns its :class:`~.explanation.Explanation` (or None when it does
not apply). The engine (:func:`collapsekit.diagnostics.explain.explain_collapse`) calls them in order."""

from __future__ import annotations

import math

import numpy as np

from collapsekit.diagnostics.explain.explanation import EXACT, Explanation, ScheduleInfo
from collapsekit.diagnostics.explain.setting import Setting
from collapsekit.diagnostics.explain.text import settings_text, short
from collapsekit.diagnostics.explain.theory import LevelTheory
from collapsekit.theory import Moments, predict

#: The most a prescription lowers β by before it settles for fewer dimensions (two orders of magnitude):
#: keeping a mode whose eigenvalue is 10⁻⁸ of the largest is not advice anyone can use.
MAX_BETA_REDUCTION = 100.0
#: KL (nats) the weakest dimension a prescribed β keeps should carry at the optimum, when the spectrum allows:
#: a β just below a critical value keeps its mode with ≈ 0 nats, which a monitor measures as collapsed.
MIN_KEPT_NATS = 0.25


def _round_down(value: float) -> float:
    """``value`` rounded down to 2 significant digits (a setting a person types; never above ``value``)."""
    if value <= 0 or not math.isfinite(value):
        return value
    unit = 10.0 ** (math.floor(math.log10(value)) - 1)
    rounded = math.floor(value / unit) * unit
    tidy = float(f"{rounded:.2g}")          # 0.43000000000000005 → 0.43
    return tidy if tidy <= value else rounded


def explain_loss_reduction(level: str, setting: Setting, n_features: int | None) -> Explanation:
    beta = setting.betas[-1]
    if n_features:
        effect = (f"with β = {short(beta)} and D = {n_features} it trains like β = {short(beta * n_features)} "
                  f"(β·D; β·D/2 = {short(beta * n_features / 2)} if the squared error lacks the ½ of a Gaussian "
                  "log-density)")
    else:
        effect = "the KL weighs D times more than β says (β·D; β·D/2 for a plain squared error)"
    return Explanation(level, "loss_reduction",
                       "the reconstruction loss is averaged over the D features instead of summed, so it is a "
                       f"β·D model: {effect}",
                       "sum the reconstruction over features (reduction='sum') and average over the batch only, "
                       "or divide β by D",
                       {"n_features": n_features, "effective_beta": None if not n_features else beta * n_features})


def explain_warmup(level: str, schedule: ScheduleInfo) -> Explanation | None:
    warm, total, scale = schedule.warmup_steps, schedule.total_steps, schedule.scale
    what = "warm-up" if schedule.name != "capacity" else "capacity increase"
    if warm is not None and total is not None and warm >= total:
        at_end = "" if scale is None else f" (the KL weight is at {100 * scale:.0f}% of β now)"
        return Explanation(level, "warmup",
                           f"the {what} ({warm} steps) is longer than the run ({total} steps): training ends before "
                           f"the KL weight reaches its final value{at_end}, so the model is never trained at its "
                           "final objective and the dimensions measured now are not those of the final β",
                           f"shorten the {what} to well under {total} steps or train longer; judge collapse after it "
                           "ends",
                           {"warmup_steps": warm, "total_steps": total, "scale": scale})
    if scale is not None and scale < 1.0 - 1e-9:
        step = "" if schedule.step is None else f" at step {schedule.step}"
        return Explanation(level, "warmup",
                           f"β is still ramping{step}: the KL weight is {100 * scale:.0f}% of its final value, so "
                           "more dimensions may collapse as it grows (the theory below uses the weight in force)",
                           "judge collapse after the warm-up ends; if dimensions collapse this early, lower the "
                           "final β or lengthen the warm-up",
                           {"warmup_steps": warm, "total_steps": total, "scale": scale})
    return None


def explain_cvae_correlation(level: str, setting: Setting, theory: LevelTheory, label: str) -> Explanation | None:
    """Theorem 2: the CVAE encodes only y's residual on x, E ⪯ E[yyᵀ], so it never keeps more than a VAE on y."""
    m = theory.moments
    assert m.yy is not None
    total = float(np.trace(m.yy))
    left = float(np.trace(m.residual()))
    fraction = left / total if total > 0 else 0.0
    on_y = predict("vae", Moments(xx=m.yy), **{**theory.kwargs, "beta": theory.beta})
    kept = theory.prediction.n_active
    lost = on_y.n_active - kept
    if lost < 1:
        return None
    tail = "" if label == EXACT else f" ({label})"
    return Explanation(
        level, "cvae_correlation",
        f"the x–y correlation leaves little for z: x explains {100 * (1 - fraction):.0f}% of y's second moment, "
        f"leaving {100 * fraction:.0f}% (tr E / tr E[yyᵀ] = {short(fraction)}) to z; at "
        f"{settings_text(setting, 'β', theory.beta, scale=theory.scale)} a VAE on y alone would keep "
        f"{on_y.n_active} dimensions, the CVAE keeps {kept}{tail}",
        "lower β or η_dec (the β line gives values), or condition on an x that predicts y less (the decoder "
        "already regresses y on x; z only carries the residual)",
        {"residual_fraction": fraction, "n_active_vae_on_y": on_y.n_active, "n_active": kept,
         "dimensions_lost_to_correlation": lost, "label": label})


def explain_learnable_sigma2(level: str, setting: Setting, scale: float) -> Explanation | None:
    """Theorem 3 (learnable Σ₂) against Theorem 5 (fixed σ₂): docs/theory.md §2."""
    beta1, beta2 = setting.beta(0) * scale, setting.beta(1) * scale
    eta_dec, s1 = setting.eta_dec, setting.sigma1
    if s1 is None:
        return Explanation(level, "learnable_sigma2",
                           "z₂'s encoder variance Σ₂ is learnable: in the linear hierarchy that is what lets z₂ "
                           "collapse exactly (Theorem 3); with a fixed σ₂ ≠ η_enc it cannot (Theorem 5)",
                           "fix σ₂ (sigma2 = a number ≠ η_enc), or raise β₁ / lower β₂", {})
    tau = beta2 / beta1 * eta_dec**2
    if s1**2 < tau:
        return Explanation(
            level, "learnable_sigma2",
            f"z₂'s encoder variance Σ₂ is learnable (Theorem 3): with σ₁² = {short(s1**2)} below "
            f"(β₂/β₁)·η_dec² = {short(tau)}, a z₂ dimension collapses exactly when its θ is below "
            f"β₂η_dec²/(√β₁·σ₁) = {short(beta2 * eta_dec**2 / (math.sqrt(beta1) * s1))}; with σ₂ fixed (Theorem 5) "
            "exact collapse cannot happen, though modes can still be inactive",
            f"fix σ₂ (sigma2 = a number ≠ η_enc, Theorem 5), or make σ₁² ≥ (β₂/β₁)η_dec², so that no z₂ "
            f"dimension collapses whatever the data (Theorem 3): β₁ ≥ {short(beta2 * eta_dec**2 / s1**2)}, or "
            f"β₂ < {short(beta1 * s1**2 / eta_dec**2)}, or σ₁ > {short(eta_dec * math.sqrt(beta2 / beta1))}",
            {"beta1_min": beta2 * eta_dec**2 / s1**2, "beta2_max": beta1 * s1**2 / eta_dec**2,
             "sigma1_min": eta_dec * math.sqrt(beta2 / beta1), "tau": tau})
    return None


def explain_beta_or_rank(level: str, setting: Setting, theory: LevelTheory, n_collapsed: int, latent_dim: int,
          label: str) -> list[Explanation]:
    """β (β₂) or β·η_dec² too large for the spectrum; or more latent dimensions than data modes."""
    pred = theory.prediction
    name = theory.beta_name
    predicted_collapsed = pred.n_collapsed + theory.extra_dims
    current = {"beta": theory.beta, "n_active": pred.n_active, "n_collapsed": predicted_collapsed,
               "theorem": pred.theorem}
    extra = [] if theory.model != "mhvae" else [f"β₁ = {short(theory.kwargs['beta1'])}",
                                                 f"σ₁ = {short(theory.kwargs['sigma1'])}"]
    settings = settings_text(setting, name, theory.beta, extra, theory.scale)
    estimate = "" if label == EXACT else f" ({label})"
    # Modes with a nonzero critical β: at most that many dimensions can ever be active.
    k_limit = min(pred.latent_dim, int(np.count_nonzero(pred.inactive_beta > 0)))
    out: list[Explanation] = []
    if k_limit < latent_dim:
        out.append(Explanation(
            level, "rank",
            f"the data have {k_limit} usable modes for {latent_dim} latent dimensions: at most {k_limit} can be "
            f"active whatever {name}",
            f"use at most {k_limit} latent dimensions, or accept {latent_dim - k_limit} collapsed",
            {"usable_modes": k_limit, "label": label}))
    if pred.n_collapsed == 0:
        if not out:
            inactive = pred.latent_dim - pred.n_active
            note = "" if not inactive else f", {inactive} inactive but not collapsed (fixed encoder std ≠ η_enc)"
            out.append(Explanation(
                level, "not_predicted",
                f"at {settings} the theory predicts no collapse ({pred.n_active} of {pred.latent_dim} active"
                f"{note}){estimate}, so {name} is not what collapses them", GENERIC_OTHER,
                {"current": current, "label": label}))
        return out
    spectrum = theory.moments.cvae_spectrum() if theory.model == "cvae" else pred.spectrum
    shown = ", ".join(short(v) for v in spectrum[:6]) + (", …" if spectrum.size > 6 else "")
    if theory.model == "mhvae":
        rule = f"{name} is below its critical value (Theorem {3 if theory.kwargs['sigma2'] is None else 5})"
    else:
        rule = (f"its eigenvalue of {'E' if theory.model == 'cvae' else 'E[xxᵀ]'} exceeds βη_dec² = "
                f"{short(theory.beta * setting.eta_dec**2)}")
    message = (f"with {settings} the data's {theory.spectrum_name} supports {pred.n_active} of {latent_dim} "
               f"(a dimension stays active only while {rule}; eigenvalues {shown}): predicted collapsed "
               f"{predicted_collapsed}, measured {n_collapsed}{estimate}")
    if k_limit <= pred.n_active:           # every usable mode is already active: only the rank is to blame
        return out
    # Keep every usable mode if a β at most MAX_BETA_REDUCTION× lower does it; else as many as such a β keeps,
    # and at least one more than now.
    target = next((k for k in range(k_limit, pred.n_active, -1)
                   if theory.bound(k) >= theory.beta / MAX_BETA_REDUCTION), pred.n_active + 1)
    upper = theory.bound(target)
    lower = theory.bound(target + 1) if target < k_limit else 0.0
    # Aim halfway (geometrically) between the target-th critical β and the next one, so that neither mode
    # sits near its critical point; without a close next one, ½·log(upper/β) = MIN_KEPT_NATS for the last kept.
    suggested = _round_down(math.sqrt(upper * max(lower, upper * math.exp(-4.0 * MIN_KEPT_NATS))))
    after = theory.at(suggested)
    # After a warm-up the weight in force is the final β, so the prescribed value is the final β itself;
    # the η_dec alternative holds that final β fixed.
    final_beta = theory.beta / theory.scale
    eta_dec = setting.eta_dec * math.sqrt(suggested / final_beta)   # every critical β scales as 1/η_dec²
    ramp = "" if theory.scale == 1.0 else " (its final value, after the warm-up)"
    why = "the threshold is βη_dec²" if theory.model != "mhvae" else "every critical β₂ scales as 1/η_dec²"
    tag = "(predicted)" if label == EXACT else f"(predicted; {label})"
    prescription = (f"{name} ≤ {short(suggested)}{ramp} keeps {after.n_active} of {latent_dim} {tag}; or keep {name} "
                    f"and lower η_dec to ≤ {short(eta_dec)} ({why})")
    if after.n_active < k_limit:
        everything = theory.bound(k_limit)
        prescription += f"; all {k_limit} usable modes need {name} < {short(everything)}"
    predicted = {"parameter": theory.beta_key, "beta": suggested, "beta_bound": upper,
                 "target_active": target, "n_active": after.n_active,
                 "n_collapsed": after.n_collapsed + theory.extra_dims, "eta_dec": eta_dec, "current": current,
                 "label": label, "theorem": pred.theorem}
    out.append(Explanation(level, "beta", message, prescription, predicted))
    return out


GENERIC_OTHER = ("look beyond β: a decoder strong enough to model the data without z, an encoder that lags the "
                  "decoder (aggressive encoder updates), or try free bits (a floor of λ nats per dimension on the "
                  "KL) or a KL warm-up")


def explain_generic(level: str, setting: Setting, theory_unavailable: bool) -> Explanation:
    beta = ", ".join(short(b) for b in setting.betas)
    why = ("the closed forms do not describe this level" if theory_unavailable else
           "no data moments were given, so no number can be predicted (pass moments= or data= for a prediction)")
    return Explanation(level, "generic",
                       f"these dimensions carry (almost) no information about the input at β = {beta}, "
                       f"η_dec = {short(setting.eta_dec)}; {why}",
                       "lower β, or lower η_dec (the collapse threshold is βη_dec²); free bits (a floor of λ nats per "
                       "dimension on the KL) or a KL warm-up keep dimensions in use", {})
