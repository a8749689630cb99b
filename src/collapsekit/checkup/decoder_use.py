"""Does the decoder use z? log p(x | z) with each example's own z, with z shuffled across examples, and with z
drawn from the prior; and per latent dimension (or channel), with only that one shuffled.

The gain of the own z over a shuffled one, in nats per example, is what the reconstruction owes to z: zero
for a decoder that ignores it (a bug in the wiring, or an autoregressive decoder that models x alone —
the measure needs only log-likelihoods, so it works for those too).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from collapsekit.activity import KL_ACTIVE_THRESHOLD, count_active
from collapsekit.checkup.patient import Patient
from collapsekit.checkup.report import Check
from collapsekit.formatting import cell

NAME = "decoder_uses_z"
#: Below this gain (nats per example) the decoder does not use z.
MIN_GAIN = KL_ACTIVE_THRESHOLD
#: A decoder whose per-example log-likelihoods do not change at all when z is replaced (bit for bit: below
#: this share) is not connected to z; a collapsed but connected decoder still moves them, if only by rounding.
DEAF = 1e-12
#: Per-dimension gains are measured for at most this many dimensions (or channels).
MAX_UNITS = 64
#: A dimension whose KL is at least this (nats) but whose gain is below MIN_UNIT_GAIN is "paid but unread".
PAID_KL, MIN_UNIT_GAIN = 0.1, 1e-3


def _mean(dist: object) -> Tensor | None:
    try:
        return dist.mean  # type: ignore[attr-defined]
    except (NotImplementedError, AttributeError):
        return None


def check_decoder_uses_z(patient: Patient) -> Check:
    """Own, shuffled and prior z through the decoder on the doctor's examples (see the module docstring)."""
    generator = torch.Generator().manual_seed(patient.seed + 1)
    own_ll, shuffled_ll, prior_ll, kls, unit_gain = [], [], [], [], []
    errors = {"own": 0.0, "shuffled": 0.0}
    moved = 0.0                 # the largest relative change of one example's log p(x|z) when its z is replaced
    with patient.mode(False), torch.no_grad():
        for x in patient.chunks():
            target = patient.target(x)
            q = patient.posterior(x)
            noise = torch.randn(q.loc.shape, generator=generator).to(q.loc)
            z = q.loc + q.scale * noise
            perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
            if x.shape[0] > 1:       # a derangement-ish shuffle: a rolled permutation moves every example
                perm = torch.roll(perm, 1)
            own = patient.log_likelihood(z, target)
            own_ll.append(own)
            shuffled_ll.append(patient.log_likelihood(z[perm], target))
            moved = max(moved, float((own - shuffled_ll[-1]).abs().max() / (1 + own.abs().max())))
            prior = torch.randn(z.shape, generator=generator).to(z) * patient.adapter.prior_std
            prior_ll.append(patient.log_likelihood(prior, target))
            kls.append(patient.kl_to_prior(q).reshape(x.shape[0], z.shape[1], -1).sum(2) if z.dim() > 2
                       else patient.kl_to_prior(q))
            own_mean, shuffled_mean = (_mean(patient.decode(v)) for v in (z, z[perm]))
            if own_mean is not None and shuffled_mean is not None:
                flat = target.reshape(target.shape[0], -1)
                errors["own"] += float((flat - own_mean.reshape(flat.shape)).pow(2).sum())
                errors["shuffled"] += float((flat - shuffled_mean.reshape(flat.shape)).pow(2).sum())
            units = z.shape[1]
            if units <= MAX_UNITS:
                gains = []
                for j in range(units):
                    mixed = z.clone()
                    mixed[:, j] = z[perm, j]
                    gains.append(own - patient.log_likelihood(mixed, target))
                unit_gain.append(torch.stack(gains, 1))
    own_v, shuf_v, prior_v = (float(torch.cat(v).mean()) for v in (own_ll, shuffled_ll, prior_ll))
    gain = own_v - shuf_v
    kl = torch.cat(kls).mean(0).cpu().numpy()
    evidence: dict[str, object] = {"log_likelihood_own_z": own_v, "log_likelihood_shuffled_z": shuf_v,
                                   "log_likelihood_prior_z": prior_v, "gain_nats": gain,
                                   "kl_per_unit": kl.tolist()}
    share = None
    if errors["shuffled"] > 0:
        share = 1.0 - errors["own"] / errors["shuffled"]
        evidence["share_explained"] = share
    per_unit = None
    if unit_gain:
        per_unit = torch.cat(unit_gain).mean(0).cpu().numpy()
        evidence["gain_per_unit"] = per_unit.tolist()
    unit = "channel" if patient.x.dim() > 0 and _spatial(patient) else "dimension"
    numbers = (f"log p(x|z) = {cell(own_v)} nats per example with its own z, {cell(shuf_v)} with z shuffled "
               f"across examples, {cell(prior_v)} with z from the prior")
    share_text = "" if share is None else \
        f"; z explains {round(100 * share) + 0:.0f}% of the squared reconstruction error"
    evidence["largest_change"] = moved
    if moved < DEAF:
        return Check(NAME, "fail", f"the decoder's output does not depend on z at all: {numbers} (no example's "
                     f"log-likelihood changes when its z is replaced)",
                     "feed z to the decoder: it is not connected (a z multiplied by 0, a decoder reading something "
                     "else)", evidence)
    if gain < MIN_GAIN:
        total = float(kl.sum())
        active = count_active(kl)
        if active == 0:
            return Check(NAME, "fail", f"z carries no information and the decoder ignores it: {numbers} (gain "
                         f"{cell(gain)} nats; KL {cell(total)} nats, no dimension active): a posterior collapse, "
                         "not a wiring bug — see effective_beta for the weight the loss really gives the KL",
                         "lower the KL weight the loss applies (β_eff), or use free bits / a KL warm-up; for an "
                         "autoregressive decoder, weaken it (fewer layers, word dropout)", evidence)
        return Check(NAME, "fail", f"the decoder ignores z although the encoder puts {cell(total)} nats in it "
                     f"({active} dimensions active): {numbers} (gain {cell(gain)} nats){share_text}",
                     "check how z reaches the decoder; for an autoregressive decoder, weaken it (fewer layers, word "
                     "dropout) so that it has to read z", evidence)
    if per_unit is not None:
        unread = [j for j in range(len(per_unit)) if kl[j] >= PAID_KL and per_unit[j] < MIN_UNIT_GAIN]
        evidence["unread_units"] = unread
        if unread:
            return Check(NAME, "warn", f"the decoder reads z (gain {cell(gain)} nats per example) but not latent "
                         f"{unit}(s) {', '.join(str(j) for j in unread[:8])}, whose KL is ≥ {PAID_KL:g} nats: "
                         f"{numbers}", "train longer, or check that every latent dimension reaches the decoder",
                         evidence)
    top = "" if per_unit is None else \
        f"; per {unit}, up to {cell(float(np.max(per_unit)))} nats ({int((per_unit >= MIN_UNIT_GAIN).sum())} of " \
        f"{len(per_unit)} used)"
    return Check(NAME, "ok", f"the decoder uses z: {numbers} (gain {cell(gain)} nats){share_text}{top}", "",
                 evidence)


def _spatial(patient: Patient) -> bool:
    with torch.no_grad():
        return patient.posterior(patient.x[:1]).loc.dim() > 2
