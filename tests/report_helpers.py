"""Reports for the renderer tests: hand-made with realistic numbers, or measured on a real model.

The measurement here is deliberately small (analytic KL per dimension, Burda's activity, (ε, δ)-
collapse, a sampled MI estimate); the diagnosis proper lives in collapsekit.diagnostics and has its
own tests. What these reports are for is checking that every renderer shows the numbers it is given.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from collapsekit.activity import active_mask, count_active
from collapsekit.diagnostics.report import CollapseReport, LevelReport, TheoryComparison


def make_level(name: str, kl: list[float], *, theory_kl: list[float] | None = None, exact: bool = True,
               eps_delta_collapsed: list[bool] | None = None, epsilon: float = 0.01) -> LevelReport:
    """A level with the given KL per dimension; the rest derived plausibly from it."""
    kl_arr = np.asarray(kl, float)
    d = kl_arr.size
    collapsed = [bool(v < epsilon) for v in kl_arr] if eps_delta_collapsed is None else eps_delta_collapsed
    variance = np.where(kl_arr > epsilon, 1 - np.exp(-2 * kl_arr), kl_arr * 1e-2)
    types = ["active" if not c else "passive" for c in collapsed]
    if d > 2 and not collapsed[1]:
        types[1] = "mixed"
    level = LevelReport(
        name=name, latent_dim=d, kl_per_dim=kl_arr.tolist(), rate=float(kl_arr.sum()), kl_exact=True,
        variance_of_mean=variance.tolist(), active_units=int((variance > 0.01).sum()),
        active_fraction=float(np.mean(~np.asarray(collapsed))),
        active_fraction_per_dim=[0.0 if c else 0.98 for c in collapsed],
        active=active_mask(kl_arr).tolist(), n_active=count_active(kl_arr), eps_delta_collapsed=list(collapsed),
        collapse_fraction={"0.001": float(np.mean(kl_arr < 0.001)), "0.01": float(np.mean(collapsed)),
                           "0.1": float(np.mean(kl_arr < 0.1))},
        variable_types=types, mean_sampled_correlation={"mean": 0.04, "sampled": 0.02},
        mutual_info=float(min(kl_arr.sum(), math.log(1797)) * 0.9), mutual_info_ci=[0.0, 0.0],
        mutual_info_per_dim=np.minimum(kl_arr * 0.92, math.log(1797)).tolist(), mutual_info_minibatch=0.0,
        mutual_info_ceiling=math.log(256), minibatch_size=256, prior_std=1.0, epsilon=epsilon)
    level.mutual_info_ci = [level.mutual_info * 0.96, level.mutual_info * 1.03]
    level.mutual_info_minibatch = min(level.mutual_info, level.mutual_info_ceiling) * 0.97
    if theory_kl is not None:
        predicted = sorted(theory_kl, reverse=True)
        n_active = count_active(predicted)
        level.theory = TheoryComparison(
            model="vae", theorem="linear VAE, learnable encoder variance", exact=exact,
            label="exact" if exact else "linear-theory estimate", kl_per_dim=predicted,
            measured_sorted=sorted(level.kl_per_dim, reverse=True), n_active_predicted=n_active,
            n_active_measured=level.n_active, critical_beta=[2.0] * d,
            hyperparameters={"beta": 1.0, "eta_enc": 1.0, "eta_dec": 0.6})
    return level


def make_history(kl_final: list[list[float]], epochs: int = 12, *, activity: bool = True) -> list[dict]:
    """Per-epoch records converging to ``kl_final`` (per level, per dimension)."""
    records = []
    for epoch in range(1, epochs + 1):
        t = epoch / epochs
        per_dim = [[float(v * t + (1 - t) * 0.3 * math.exp(-j / 3)) for j, v in enumerate(level)]
                   for level in kl_final]
        record = {"epoch": epoch, "step": 15 * epoch, "loss": 40 - 5 * t, "reconstruction": 38 - 6 * t,
                  "kl": float(sum(map(sum, per_dim))), "kl_per_level": [float(sum(v)) for v in per_dim],
                  "kl_per_dim": per_dim, "beta_scale": 1.0}
        if activity:
            record["active_units"] = [int(sum(v > 0.01 for v in level)) for level in per_dim]
            record["mutual_info_minibatch"] = [float(min(sum(v) * 0.9, math.log(128))) for v in per_dim]
        records.append(record)
    return records


def vae_report(*, activity: bool = True) -> CollapseReport:
    """A 16-dimensional VAE with 12 collapsed dimensions, theory exact, two explanations."""
    kl = [2.1, 1.4, 0.02, 0.8, 0.0003, 0.6] + [0.0001 * (i + 1) for i in range(10)]
    theory = [2.3, 1.5, 0.9, 0.55, 0.03] + [0.0] * 11
    eps_delta = [v < 0.01 for v in kl]
    eps_delta[2] = True   # active (mean KL 0.02 ≥ 0.01 nats), yet (ε, δ)-collapsed: the two measures differ
    level = make_level("z", kl, theory_kl=theory, eps_delta_collapsed=eps_delta)
    report = CollapseReport(
        levels=[level], n_examples=1797, elbo=-41.25, log_likelihood=-39.87, importance_samples=1000,
        model={"kind": "vae", "arch": "linear", "latent_dims": [16], "beta": 1.0, "eta_enc": 1.0, "eta_dec": 0.6,
               "data": "digits", "epoch": 12, "run_dir": "runs/demo"},
        explanations=[{"level": "z", "cause": "beta",
                       "message": "β η_dec² = 0.36 exceeds the data's eigenvalue along 12 directions",
                       "prescription": "set β < 0.41 to keep 5 dimensions active (predicted)",
                       "predicted": {"beta": 0.41, "n_active": 5}},
                      {"level": "z", "cause": "a_cause_of_the_future",
                       "message": "The decoder std η_dec = 0.6 is large for data in [0, 1].",
                       "prescription": {"eta_dec": 0.3}}],
        history=make_history([kl], activity=activity), notes=["evaluated on the data the model was trained on"])
    return report


def hierarchy_report() -> CollapseReport:
    z1 = make_level("z1", [1.2, 0.9, 0.4, 0.003, 0.001, 0.0005], theory_kl=[1.3, 0.8, 0.5, 0.1, 0.0, 0.0], exact=False)
    z2 = make_level("z2", [0.5, 0.004, 0.001], theory_kl=[0.6, 0.0, 0.0], exact=False)
    z1.kl_exact = False
    return CollapseReport(levels=[z1, z2], n_examples=500, elbo=-55.0, log_likelihood=None,
                          model={"kind": "hvae", "arch": "mlp", "latent_dims": [6, 3], "beta": [1.0, 1.0]},
                          history=make_history([z1.kl_per_dim, z2.kl_per_dim], epochs=6),
                          notes=[("log-likelihood not computed: the objective has no decoder density "
                                  "(likelihood skipped)")])


def cvae_report() -> CollapseReport:
    z = make_level("z", [0.9, 0.3, 0.002, 0.0001], theory_kl=[1.0, 0.2, 0.0, 0.0])
    return CollapseReport(levels=[z], n_examples=300, elbo=-30.0, log_likelihood=-29.0, importance_samples=100,
                          model={"kind": "cvae", "arch": "linear", "latent_dims": [4], "data": "digits/quadrants"},
                          history=make_history([z.kl_per_dim], epochs=4, activity=False))


# -- measured on a real model ------------------------------------------------------------------------
@torch.no_grad()
def measure(model: torch.nn.Module, x: torch.Tensor, *, epsilon: float = 0.01, delta: float = 0.01,
            batch: int = 256) -> LevelReport:
    """A LevelReport of a one-level Gaussian VAE on ``x`` (analytic KL per example and dimension)."""
    model.eval()
    q = model(x).levels[0].posterior
    mu, std = q.loc, q.scale.expand_as(q.loc)
    eta = float(getattr(model, "eta_enc", 1.0))
    kl_each = torch.log(eta / std) + (std**2 + mu**2) / (2 * eta**2) - 0.5          # (N, d)
    kl = kl_each.mean(0).double().numpy()
    collapsed = ((kl_each < epsilon).double().mean(0) >= 1 - delta).numpy()
    variance = mu.var(0).double().numpy()
    d = mu.shape[1]
    # I(x; z) = E[log q(z|x) − log q(z)], q(z) the aggregate posterior over (at most 512) examples.
    mu_s, std_s = mu[:512], std[:512]
    n = mu_s.shape[0]
    z = torch.distributions.Normal(mu_s, std_s).sample()
    log_q = torch.distributions.Normal(mu_s[None], std_s[None]).log_prob(z[:, None])   # (N, N, d)
    joint = log_q.sum(-1)
    mi = float((joint.diagonal() - (torch.logsumexp(joint, 1) - math.log(n))).mean())
    mi_dim = (log_q.diagonal(dim1=0, dim2=1).T - (torch.logsumexp(log_q, 1) - math.log(n))).mean(0)
    batch = min(batch, n)
    idx = torch.arange(batch)
    sub = joint[idx][:, idx]
    mi_batch = float((sub.diagonal() - (torch.logsumexp(sub, 1) - math.log(batch))).mean())
    types = ["passive" if c else "active" for c in collapsed]
    return LevelReport(
        name="z", latent_dim=d, kl_per_dim=kl.tolist(), rate=float(kl.sum()), kl_exact=True,
        variance_of_mean=variance.tolist(), active_units=int((variance > 0.01).sum()),
        active_fraction=float((kl_each >= epsilon).double().mean()),
        active_fraction_per_dim=(kl_each >= epsilon).double().mean(0).tolist(),
        active=active_mask(kl).tolist(), n_active=count_active(kl), eps_delta_collapsed=collapsed.tolist(),
        collapse_fraction={str(e): float(((kl_each < e).double().mean(0) >= 1 - delta).double().mean())
                           for e in (0.001, 0.01, 0.1)},
        variable_types=types, mean_sampled_correlation={}, mutual_info=mi, mutual_info_ci=[mi - 0.05, mi + 0.05],
        mutual_info_per_dim=mi_dim.tolist(), mutual_info_minibatch=mi_batch, mutual_info_ceiling=math.log(batch),
        minibatch_size=batch, prior_std=eta, epsilon=epsilon, delta=delta)
