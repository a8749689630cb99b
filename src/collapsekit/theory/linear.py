"""Closed-form global optima of the linear VAE, CVAE and two-level MHVAE (docs/theory.md §2).

Each ``predict_*`` reads the data only through :class:`~collapsekit.theory.moments.Moments`,
computes the optimal singular values per latent mode, and evaluates the exact optimal loss
(per example, nats, every Gaussian constant included) from those values. The three official
code bugs (docs/theory.md §5) are not reproduced: the CVAE σ threshold is θ ≥ βη_dec², c = η_dec/η_enc
everywhere, and the Theorem 5 threshold has β₁ where the derivation puts it.

Conventions: θ is descending; at equality with a threshold the optimum is the collapsed one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from collapsekit._validation import kl_weight, latent_size, positive, positive_vector
from collapsekit.errors import ParameterError
from collapsekit.theory.moments import Moments
from collapsekit.theory.prediction import Prediction

_LOG_2PI = float(np.log(2.0 * np.pi))


# -- shared pieces ------------------------------------------------------------------------------
def gaussian_kl(mean_square: np.ndarray, std: np.ndarray, prior_std: float) -> np.ndarray:
    """KL(N(μ, std²) ‖ N(0, prior_std²)) per dimension in nats, averaged over μ with E[μ²] = mean_square."""
    ratio = (np.asarray(std, dtype=float) / prior_std) ** 2
    return 0.5 * (np.asarray(mean_square, dtype=float) / prior_std**2 + ratio - 1.0 - np.log(ratio))


def _gaussian_nll_constant(dim: int, eta_dec: float) -> float:
    """(d/2)·log(2π η_dec²): the normalising constant of a d-dimensional N(·, η_dec² I), nats."""
    return 0.5 * dim * (_LOG_2PI + 2.0 * np.log(eta_dec))


def _require_moments(moments: object) -> Moments:
    if not isinstance(moments, Moments):
        raise ParameterError("expected a collapsekit.theory.Moments; build one with Moments.from_data(x[, y])")
    return moments


def _safe_div(num: np.ndarray | float, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else 0 (zero modes have zero singular values)."""
    den = np.asarray(den, dtype=float)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _learnable_modes(theta: np.ndarray, beta: float, eta_enc: float, eta_dec: float, inactive: np.ndarray):
    """Optimal (ω, λ, σ) of a one-level linear VAE with learnable diagonal Σ.

    θ are the std-like data singular values; mode i is zero iff θ_i² ≤ β η_dec². The caller
    passes that predicate (``inactive``), computed as β ≥ critical β, so that the boundary
    convention does not depend on rounding in θ.
    """
    floor = beta * eta_dec**2
    gap = np.where(inactive, 0.0, np.maximum(theta**2 - floor, 0.0))
    omega = np.sqrt(gap) / eta_enc
    lam = eta_enc * _safe_div(np.sqrt(gap), theta)
    std = np.where(inactive, eta_enc, np.sqrt(beta) * eta_enc * eta_dec * _safe_div(1.0, theta))
    return omega, lam, std


def _fixed_modes(theta: np.ndarray, std: np.ndarray, beta: float, eta_enc: float, eta_dec: float,
                 inactive: np.ndarray):
    """Optimal (ω, λ) of a one-level linear VAE with fixed stds (Theorem 1).

    ``std`` must already be paired with θ (ascending std against descending θ); mode i is zero
    iff θ_i ≤ √β·c·σ_i, passed in as ``inactive``.
    """
    scale = np.sqrt(beta) * eta_dec / eta_enc  # √β·c
    gap = np.where(inactive, 0.0, np.maximum(theta - scale * std, 0.0))
    return np.sqrt(scale * gap / std), np.sqrt(std * gap / scale)


def _one_level_loss(spectrum: np.ndarray, omega: np.ndarray, lam: np.ndarray, std: np.ndarray,
                    beta: float, eta_enc: float, eta_dec: float) -> tuple[float, float, np.ndarray]:
    """Exact (loss, reconstruction, kl_per_dim) of a one-level linear VAE at aligned parameters.

    ``spectrum`` holds all std-like θ; the first len(omega) are paired with latent modes.
    reconstruction = [Σ_i (ω_iλ_i − θ_i)² + ω_i²σ_i² + Σ_{i>k} θ_i²] / (2η_dec²) + (d/2)log(2πη_dec²).
    """
    k = omega.size
    theta = spectrum[:k]
    scaled = np.sum((omega * lam - theta) ** 2 + (omega * std) ** 2) + np.sum(spectrum[k:] ** 2)
    reconstruction = scaled / (2.0 * eta_dec**2) + _gaussian_nll_constant(spectrum.size, eta_dec)
    kl_per_dim = gaussian_kl(lam**2, std, eta_enc)
    return float(reconstruction + beta * kl_per_dim.sum()), float(reconstruction), kl_per_dim


# -- VAE ---------------------------------------------------------------------------------------
def predict_vae(moments: Moments, latent_dim: int, beta: float = 1.0, eta_enc: float = 1.0,
                eta_dec: float = 1.0, encoder_std: float | Sequence[float] | None = None) -> Prediction:
    """Global optimum of the linear VAE q(z|x) = N(Wx, Σ), p(x|z) = N(Uz, η_dec² I), p(z) = N(0, η_enc² I).

    Parameters
    ----------
    moments : Moments
        Raw second moments of the data (only ``xx`` is used).
    latent_dim : int
        Number of latent dimensions, at most the data dimension.
    beta, eta_enc, eta_dec : float
        KL weight (true β), prior std and decoder std; all > 0.
    encoder_std : None, float or sequence of float
        ``None``: learnable diagonal Σ (Wang & Ziyin 2022; a dimension collapses iff
        eig_i E[xxᵀ] ≤ β η_dec²). Otherwise the fixed stds of Σ (Theorem 1): a scalar is used
        for every dimension; the smallest std pairs with the largest θ. With fixed stds a mode
        can be zeroed (inactive) but the posterior equals the prior only where std = η_enc.
    """
    moments = _require_moments(moments)
    beta, eta_enc, eta_dec = kl_weight("beta", beta), positive("eta_enc", eta_enc), positive("eta_dec", eta_dec)
    k = latent_size("latent_dim", latent_dim, moments.d_x, "data dimension")
    spectrum = moments.vae_spectrum()
    theta = spectrum[:k]
    hyper: dict[str, Any] = {"latent_dim": k, "beta": beta, "eta_enc": eta_enc, "eta_dec": eta_dec}
    if encoder_std is None:
        critical = inactive_beta = theta**2 / eta_dec**2
        inactive = collapsed = beta >= inactive_beta
        omega, lam, std = _learnable_modes(theta, beta, eta_enc, eta_dec, inactive)
        threshold = np.full(k, np.sqrt(beta) * eta_dec)
        theorem = "linear VAE, learnable encoder variance (Wang & Ziyin 2022; Dang et al. 2024)"
    else:
        fixed = positive_vector("encoder_std", encoder_std, k)
        hyper["encoder_std"] = fixed.tolist()
        std = np.sort(fixed)
        noise = std * eta_dec / eta_enc  # c·σ_i
        inactive_beta = theta**2 / noise**2
        inactive = beta >= inactive_beta
        omega, lam = _fixed_modes(theta, std, beta, eta_enc, eta_dec, inactive)
        at_prior = np.isclose(std, eta_enc, rtol=1e-12, atol=0.0)
        collapsed = inactive & at_prior
        threshold = np.sqrt(beta) * noise
        critical = np.where(at_prior, inactive_beta, np.inf)
        theorem = "Theorem 1: linear VAE, fixed encoder variance"
    loss, reconstruction, kl_per_dim = _one_level_loss(spectrum, omega, lam, std, beta, eta_enc, eta_dec)
    # Reported on the eigenvalue scale, as for the CVAE: θ = eig E[xxᵀ] against βη_dec² (or β(cσ)²).
    return Prediction(model="vae", theorem=theorem, hyperparameters=hyper, spectrum=spectrum**2, theta=theta**2,
                      threshold=threshold**2, decoder_sv=omega, encoder_sv=lam, encoder_std=std,
                      inactive=inactive, collapsed=collapsed, kl_per_dim=kl_per_dim, critical_beta=critical,
                      inactive_beta=inactive_beta, loss=loss, reconstruction=reconstruction,
                      kl=float(kl_per_dim.sum()))


# -- CVAE --------------------------------------------------------------------------------------
def predict_cvae(moments: Moments, latent_dim: int, beta: float = 1.0, eta_enc: float = 1.0,
                 eta_dec: float = 1.0) -> Prediction:
    """Theorem 2: optimum of the linear CVAE with learnable diagonal encoder variance.

    q(z|x,y) = N(W₁x + W₂y, Σ), p(y|x,z) = N(U₁z + U₂x, η_dec² I), p(z|x) = N(0, η_enc² I).
    The optimum regresses y on x (U₂ = E[yxᵀ]E[xxᵀ]⁺) and encodes only the residual, whose second
    moment E has eigenvalues θ: dimension i collapses iff θ_i ≤ β η_dec². The more x explains y,
    the smaller E and the more dimensions collapse.

    ``encoder_sv`` are the singular values of W₂E^{1/2}; ``decoder_sv`` those of U₁.
    """
    moments = _require_moments(moments)
    beta, eta_enc, eta_dec = kl_weight("beta", beta), positive("eta_enc", eta_enc), positive("eta_dec", eta_dec)
    if not moments.conditional:
        raise ParameterError("the CVAE needs paired moments of (x, y): use Moments.from_data(x, y)")
    assert moments.d_y is not None
    k = latent_size("latent_dim", latent_dim, moments.d_y, "dimension of y")
    spectrum = moments.cvae_spectrum()
    theta = spectrum[:k]
    # The residual problem is the learnable-Σ VAE on data whose std-like θ is √eig(E).
    critical = theta / eta_dec**2
    inactive = beta >= critical
    omega, lam, std = _learnable_modes(np.sqrt(theta), beta, eta_enc, eta_dec, inactive)
    loss, reconstruction, kl_per_dim = _one_level_loss(np.sqrt(spectrum), omega, lam, std, beta, eta_enc, eta_dec)
    return Prediction(model="cvae", theorem="Theorem 2: linear CVAE, learnable encoder variance",
                      hyperparameters={"latent_dim": k, "beta": beta, "eta_enc": eta_enc, "eta_dec": eta_dec},
                      spectrum=spectrum, theta=theta, threshold=np.full(k, beta * eta_dec**2),
                      decoder_sv=omega, encoder_sv=lam, encoder_std=std, inactive=inactive,
                      collapsed=inactive.copy(), kl_per_dim=kl_per_dim, critical_beta=critical,
                      inactive_beta=critical.copy(), loss=loss, reconstruction=reconstruction,
                      kl=float(kl_per_dim.sum()))


# -- MHVAE -------------------------------------------------------------------------------------
def predict_mhvae(moments: Moments, latent_dims: Sequence[int] = (5, 5), beta1: float = 1.0,
                  beta2: float = 1.0, eta_enc: float = 1.0, eta_dec: float = 1.0, sigma1: float = 0.5,
                  sigma2: float | None = None) -> Prediction:
    """Theorems 3 and 5: optimum of the two-level linear Markovian hierarchical VAE.

    q(z₁|x) = N(W₁x, σ₁² I), q(z₂|z₁) = N(W₂z₁, Σ₂); p(z₂) = N(0, η_enc² I),
    p(z₁|z₂) = N(U₂z₂, η_dec² I), p(x|z₁) = N(U₁z₁, η_dec² I). Loss: −E log p(x|z₁)
    + β₁ E[log q(z₁|x) − log p(z₁|z₂)] + β₂ E KL(q(z₂|z₁) ‖ p(z₂)).

    ``sigma2=None`` makes Σ₂ learnable (Theorem 3: z₂ dimension i collapses iff β₂ ≥ β₁σ₁²/η_dec²
    and β₂ ≥ √β₁ σ₁ θ_i / η_dec²); a number fixes Σ₂ = σ₂² I (Theorem 5: collapse only if σ₂ = η_enc).
    ``latent_dims = (d₁, d₂)`` with d₂ ≤ d₁ ≤ data dimension; modes of z₁ beyond d₂ have no z₂ above them.

    Per-dimension fields describe z₂; ``encoder_sv`` are the singular values of W₂, and the
    paper's λ (singular values of V₁, the whitened z₁ encoder) is ``level1["encoder_sv"]``.
    ``critical_beta`` is the critical β₂.
    """
    moments = _require_moments(moments)
    if isinstance(latent_dims, (int, np.integer)) or len(latent_dims) != 2:
        raise ParameterError(f"latent_dims must be two sizes (d1, d2), got {latent_dims!r}")
    d1 = latent_size("latent_dims[0] (z1)", latent_dims[0], moments.d_x, "data dimension")
    d2 = latent_size("latent_dims[1] (z2)", latent_dims[1], d1, "the size of z1")
    beta1, beta2 = kl_weight("beta1", beta1), kl_weight("beta2", beta2)
    eta_enc, eta_dec, sigma1 = positive("eta_enc", eta_enc), positive("eta_dec", eta_dec), positive("sigma1", sigma1)
    learnable = sigma2 is None
    s2 = eta_enc if learnable else positive("sigma2", sigma2)  # the std z₂ has when its mode is zero
    c = eta_dec / eta_enc
    spectrum = moments.vae_spectrum()
    theta = spectrum[:d1]

    # z₁ mode i has second moment t_i = λ_i² + σ₁². With z₂ above it the optimum is t_A when
    # t_A ≥ τ (z₂ active), else t_B, the optimum with z₂'s mode zero; t ≥ σ₁² always.
    tau = (beta2 / beta1) * (c * s2) ** 2
    t_b = theta * sigma1 / np.sqrt(beta1)
    if learnable:
        t_a = theta**2 * sigma1**2 / (beta2 * eta_dec**2)
    else:
        t_a = (theta**2 * sigma1**2 / (np.sqrt(beta1 * beta2) * c * s2)) ** (2.0 / 3.0)
    has_z2 = np.arange(d1) < d2
    branch = np.where(has_z2 & (t_a >= tau), t_a, t_b)
    t = np.maximum(branch, sigma1**2)
    lam = np.sqrt(t - sigma1**2)
    u1 = theta * lam / t                       # U₁'s singular values: the least-squares decoder of z₁

    # z₂ is a one-level linear VAE on z₁ with data second moment t and KL weight β₂/β₁.
    # z₂ mode i is zero iff t_i ≤ τ, i.e. iff β₂ ≥ max(β₁σ₁², √β₁σ₁θ_i) / (c·s₂)².
    inactive_beta = np.maximum(beta1 * sigma1**2, np.sqrt(beta1) * sigma1 * theta[:d2]) / (c * s2) ** 2
    z2_inactive = beta2 >= inactive_beta
    at_prior = learnable or bool(np.isclose(s2, eta_enc, rtol=1e-12, atol=0.0))
    critical = inactive_beta if at_prior else np.full(d2, np.inf)
    collapsed = z2_inactive & at_prior
    beta_ratio = beta2 / beta1
    top_theta = np.sqrt(t[:d2])
    if learnable:
        omega, top_lam, std = _learnable_modes(top_theta, beta_ratio, eta_enc, eta_dec, z2_inactive)
    else:
        std = np.full(d2, s2)
        omega, top_lam = _fixed_modes(top_theta, std, beta_ratio, eta_enc, eta_dec, z2_inactive)
    w2 = top_lam / top_theta                   # W₂'s singular values (top_theta ≥ σ₁ > 0)

    # Exact loss, per example, nats.
    reconstruction = (np.sum(theta**2 * sigma1**2 / t) + np.sum(spectrum[d1:] ** 2)) / (2 * eta_dec**2) \
        + _gaussian_nll_constant(spectrum.size, eta_dec)
    mismatch = t.copy()                        # E‖z₁ − U₂z₂‖² per mode, before /2η²
    mismatch[:d2] = (omega * w2 - 1.0) ** 2 * t[:d2] + (omega * std) ** 2
    level1_kl = mismatch / (2 * eta_dec**2) + 0.5 * (np.log(eta_dec**2 / sigma1**2) - 1.0)
    kl_per_dim = gaussian_kl(w2**2 * t[:d2], std, eta_enc)
    loss = reconstruction + beta1 * level1_kl.sum() + beta2 * kl_per_dim.sum()

    threshold = np.full(d2, np.sqrt(beta1) * tau / sigma1 if sigma1**2 <= tau else -np.inf)

    hyper = {"latent_dims": [d1, d2], "beta1": beta1, "beta2": beta2, "eta_enc": eta_enc,
             "eta_dec": eta_dec, "sigma1": sigma1, "sigma2": None if learnable else s2}
    theorem = ("Theorem 3: linear MHVAE, fixed σ₁, learnable Σ₂" if learnable
               else "Theorem 5: linear MHVAE, fixed σ₁ and σ₂")
    level1 = {"encoder_sv": lam, "decoder_sv": u1, "inactive": branch <= sigma1**2,
              "kl_per_dim": level1_kl, "kl": float(level1_kl.sum()), "theta": theta**2}
    # Reported on the eigenvalue scale, as for the CVAE: θ = eig E[xxᵀ] against the squared threshold.
    return Prediction(model="mhvae", theorem=theorem, hyperparameters=hyper, spectrum=spectrum**2,
                      theta=theta[:d2] ** 2, threshold=np.where(np.isfinite(threshold), threshold**2, threshold),
                      decoder_sv=omega, encoder_sv=w2, encoder_std=std,
                      inactive=z2_inactive, collapsed=collapsed, kl_per_dim=kl_per_dim, critical_beta=critical,
                      inactive_beta=inactive_beta, loss=float(loss), reconstruction=float(reconstruction),
                      kl=float(kl_per_dim.sum()), level1=level1)


# -- recommendations ---------------------------------------------------------------------------
PREDICTORS: dict[str, Callable[..., Prediction]] = {"vae": predict_vae, "cvae": predict_cvae, "mhvae": predict_mhvae}


def predict(model: str, moments: Moments, **hyperparameters: Any) -> Prediction:
    """Dispatch to ``predict_vae``, ``predict_cvae`` or ``predict_mhvae`` by name."""
    try:
        predictor = PREDICTORS[model]
    except KeyError:
        raise ParameterError(f"unknown model {model!r}; choose one of {sorted(PREDICTORS)}") from None
    return predictor(moments, **hyperparameters)


def recommend_beta(moments: Moments, model: str = "cvae", *, target_active: int,
                   **hyperparameters: Any) -> float:
    """The largest β (β₂ for the MHVAE) that keeps at least ``target_active`` dimensions active.

    Dimension i is active for every β strictly below its ``inactive_beta``; at equality it is
    zero (boundary convention). The answer is therefore the largest float below the
    ``target_active``-th largest ``inactive_beta``. Other hyper-parameters are held at the
    given values (β itself does not enter). "Active" means a nonzero encoder mode: with a
    fixed encoder std ≠ η_enc a mode can be zeroed without the posterior equalling the prior.

    Raises
    ------
    ParameterError
        If no β > 0 keeps that many dimensions active.
    """
    hyperparameters.pop("beta2" if model == "mhvae" else "beta", None)
    prediction = predict(model, moments, **hyperparameters)
    k = latent_size("target_active", target_active, prediction.latent_dim, "latent size")
    critical = np.sort(prediction.inactive_beta)[::-1][k - 1]
    if critical <= 0:
        supported = int(np.count_nonzero(prediction.inactive_beta > 0))
        raise ParameterError(f"no β > 0 keeps {k} dimensions active: the data support at most {supported}")
    return float(np.nextafter(critical, 0.0))
