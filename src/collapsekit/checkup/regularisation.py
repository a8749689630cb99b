"""Under-regularised latents (the latent-diffusion failure): the aggregate posterior far from the prior, so that
z drawn from the prior decodes to something unlike the data.

Evidence: the aggregate posterior's moments per latent dimension (mean, and std = √(Var μ + E σ²)) and
the KL of the Gaussian with those moments to the prior, summed over dimensions; and how far the decoded
means of prior samples lie from the nearest example, relative to how far the examples lie from their
nearest neighbour among the others (the data's own spacing).
"""

from __future__ import annotations

import torch

from collapsekit.checkup.patient import Patient
from collapsekit.checkup.report import Check
from collapsekit.errors import ParameterError
from collapsekit.formatting import cell

NAME = "regularisation"
#: Moment-matched KL per latent dimension (nats) above which the aggregate posterior is "far" (warn, fail).
WARN_KL, FAIL_KL = 0.25, 1.0
#: Prior decodes this many times farther from the nearest example than examples from each other (warn, fail).
WARN_DISTANCE, FAIL_DISTANCE = 2.0, 5.0


def _nearest(points: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Squared distance of each row of ``points`` to its nearest row of ``data``, per feature."""
    return torch.cdist(points.double(), data.double()).min(1).values.pow(2) / data.shape[1]


def check_regularisation(patient: Patient) -> Check:
    """Moments and moment-matched KL of the aggregate posterior; prior decodes against the data."""
    means, variances = [], []
    generator = torch.Generator().manual_seed(patient.seed + 2)
    with patient.mode(False), torch.no_grad():
        for x in patient.chunks():
            q = patient.posterior(x)
            means.append(q.loc.reshape(x.shape[0], q.loc.shape[1], -1).double())
            variances.append(q.scale.reshape(x.shape[0], q.scale.shape[1], -1).double().pow(2))
        mu, var = torch.cat(means), torch.cat(variances)          # (N, units, positions)
        s2 = patient.adapter.prior_std**2
        centre = mu.mean((0, 2))
        total = mu.var((0, 2), unbiased=False) + var.mean((0, 2))
        kl = 0.5 * (total / s2 + centre.pow(2) / s2 - 1 - torch.log(total / s2))
        per_unit = float(kl.mean())
        evidence: dict[str, object] = {"aggregate_mean": centre.tolist(), "aggregate_std": total.sqrt().tolist(),
                                       "moment_kl_per_unit": kl.tolist(), "moment_kl": float(kl.sum())}
        ratio = None
        n = min(256, patient.x.shape[0])
        x = patient.x[:n]
        target = patient.target(x).reshape(n, -1)
        q = patient.posterior(x)
        try:
            prior = torch.randn(q.loc.shape, generator=generator).to(q.loc) * patient.adapter.prior_std
            sampled = patient.decode(prior).mean.reshape(n, -1)
        except (NotImplementedError, AttributeError, ParameterError):
            sampled = None
        if sampled is not None and n > 2:
            half = n // 2
            reference = float(_nearest(target[:half], target[half:]).median())
            far = float(_nearest(sampled[:half], target[half:]).median())
            ratio = far / max(reference, 1e-12)
            evidence.update({"prior_decode_distance": far, "data_spacing": reference, "distance_ratio": ratio})
    std = total.sqrt()
    worst = int(torch.argmax(kl))
    moments = (f"the aggregate posterior is N({cell(float(centre[worst]))}, {cell(float(std[worst]))}²) in its "
               f"farthest dimension against the prior N(0, {cell(patient.adapter.prior_std)}²), a moment-matched KL "
               f"of {cell(per_unit)} nats per dimension")
    decodes = "" if ratio is None else \
        f"; prior samples decode {cell(ratio)}× as far from the nearest example as examples lie from each other"
    fix = ("raise the KL weight (e.g. from 1e-6 towards 1e-4–1e-2), or fit a prior to the aggregate posterior (a "
           "second-stage model) before sampling z from it; latent diffusion rescales the latents by their std")
    if per_unit > FAIL_KL or (ratio is not None and ratio > FAIL_DISTANCE):
        return Check(NAME, "fail", f"{moments}{decodes}: the latents are under-regularised", fix, evidence)
    if per_unit > WARN_KL or (ratio is not None and ratio > WARN_DISTANCE):
        return Check(NAME, "warn", f"{moments}{decodes}", fix, evidence)
    return Check(NAME, "ok", f"{moments}{decodes}", "", evidence)
