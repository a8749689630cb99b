"""Check the closed forms by minimising each linear model's full loss numerically.

The losses below are written from the model definitions (expected negative β-ELBO with the
Gaussian expectations taken analytically, every constant included), independently of the
closed forms in :mod:`collapsekit.theory.linear`. They are minimised in float64 with L-BFGS
from several random starts; the best value must match ``Prediction.loss``.

Costs are O(d²·k) per evaluation (trace identities, never a d×d product of d×d matrices),
so users can verify on their own data of a few hundred dimensions in seconds to minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from collapsekit.errors import ParameterError
from collapsekit.theory.linear import predict
from collapsekit.theory.moments import Moments
from collapsekit.theory.prediction import Prediction, _jsonable

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Verification:
    """Closed form against direct minimisation of the same loss.

    Attributes
    ----------
    prediction : Prediction
        The closed-form optimum.
    numerical_loss : float
        Best loss found by multi-start L-BFGS, nats per example.
    relative_gap : float
        |numerical − closed form| / |closed form|.
    singular_values : dict
        name → (closed form, numerical), each sorted descending.
    starts, rtol : int, float
        Random starts used; tolerance on ``relative_gap`` for :attr:`agrees`.
    """

    prediction: Prediction
    numerical_loss: float
    relative_gap: float
    singular_values: dict[str, tuple[np.ndarray, np.ndarray]]
    starts: int
    rtol: float

    @property
    def agrees(self) -> bool:
        """True when the two losses agree to ``rtol``."""
        return self.relative_gap <= self.rtol

    @property
    def max_sv_error(self) -> float:
        """Largest absolute difference between closed-form and numerical singular values / stds."""
        return max((float(np.max(np.abs(a - b))) for a, b in self.singular_values.values() if a.size),
                   default=0.0)

    def summary(self) -> str:
        """One line: both losses, the gap and the verdict."""
        word = "agrees" if self.agrees else "DISAGREES"
        return (f"{self.prediction.model.upper()}: closed form {self.prediction.loss:.10g} nats, "
                f"numerical {self.numerical_loss:.10g} nats, relative gap {self.relative_gap:.2e} "
                f"({word} at rtol {self.rtol:g}); largest singular-value difference {self.max_sv_error:.2e}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return _jsonable({
            "model": self.prediction.model, "closed_form_loss": self.prediction.loss,
            "numerical_loss": self.numerical_loss, "relative_gap": self.relative_gap,
            "agrees": self.agrees, "rtol": self.rtol, "starts": self.starts,
            "max_sv_error": self.max_sv_error, "hyperparameters": self.prediction.hyperparameters,
            "singular_values": {k: {"closed_form": a, "numerical": b} for k, (a, b) in self.singular_values.items()},
        })


# -- the losses ---------------------------------------------------------------------------------
def _torch():
    import torch  # imported lazily: the closed forms need only numpy

    return torch


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    phi, basis = np.linalg.eigh(matrix)
    return (basis * np.sqrt(np.clip(phi, 0.0, None))) @ basis.T


def _sv(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.svd(matrix, compute_uv=False)


@dataclass
class _Problem:
    shapes: dict[str, tuple[int, ...]]
    loss: Callable[[dict[str, Any]], Any]             # torch tensors → scalar tensor
    measured: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _gaussian_kl_sum(torch, mean_square, log_std, prior_std: float):
    """Σ_i KL(N(m_i, s_i²) ‖ N(0, prior²)) given Σ_i E[m_i²] (scalar) and log s (vector), nats."""
    var_ratio = torch.exp(2 * log_std) / prior_std**2
    return 0.5 * (mean_square / prior_std**2 + var_ratio.sum() - log_std.numel() - torch.log(var_ratio).sum())


def _reconstruction(torch, A, U, W, noise_trace, eta_dec: float):
    """E‖x − UWx‖² + noise_trace over 2η², plus the Gaussian constant: −E log N(x; UWx, η² I)."""
    AWt = A @ W.T
    error = torch.trace(A) - 2 * (U * AWt).sum() + ((U.T @ U) * (W @ AWt)).sum() + noise_trace
    return error / (2 * eta_dec**2) + 0.5 * A.shape[0] * (_LOG_2PI + 2 * math.log(eta_dec))


def _vae_problem(m: Moments, latent_dim: int, beta: float, eta_enc: float, eta_dec: float,
                 encoder_std: float | Sequence[float] | None, **_: Any) -> _Problem:
    torch = _torch()
    A = torch.as_tensor(m.xx)
    d, k = m.d_x, latent_dim
    fixed = None if encoder_std is None else torch.as_tensor(
        np.log(np.broadcast_to(np.asarray(encoder_std, float), (k,))).copy())
    shapes = {"U": (d, k), "W": (k, d)} | ({"log_std": (k,)} if fixed is None else {})

    def loss(p):
        log_std = p["log_std"] if fixed is None else fixed
        U, W = p["U"], p["W"]
        rec = _reconstruction(torch, A, U, W, (U**2 * torch.exp(2 * log_std)).sum(), eta_dec)
        return rec + beta * _gaussian_kl_sum(torch, (W * (W @ A)).sum(), log_std, eta_enc)

    root = _sqrt_psd(m.xx)

    def measured(p):
        out = {"decoder_sv": _sv(p["U"]), "encoder_sv": _sv(p["W"] @ root)}
        if fixed is None:
            out["encoder_std"] = np.sort(np.exp(p["log_std"]))[::-1]
        return out

    return _Problem(shapes, loss, measured)


def _cvae_problem(m: Moments, latent_dim: int, beta: float, eta_enc: float, eta_dec: float, **_: Any) -> _Problem:
    torch = _torch()
    xx, xy, yy = (torch.as_tensor(a) for a in (m.xx, m.xy, m.yy))
    dx, dy, k = m.d_x, int(m.d_y), latent_dim
    joint = torch.cat([torch.cat([xx, xy], 1), torch.cat([xy.T, yy], 1)], 0)
    shapes = {"W1": (k, dx), "W2": (k, dy), "U1": (dy, k), "U2": (dy, dx), "log_std": (k,)}

    def loss(p):
        enc = torch.cat([p["W1"], p["W2"]], 1)                  # z mean = enc @ [x; y]
        U1, U2 = p["U1"], p["U2"]
        mean_moment = enc @ joint @ enc.T                       # E[mmᵀ], k × k
        # residual b = U₂x − y; E[m bᵀ] and E‖b‖² from the moments
        cross = p["W1"] @ (xx @ U2.T - xy) + p["W2"] @ (xy.T @ U2.T - yy)
        b_sq = (U2 * (U2 @ xx)).sum() - 2 * (U2 * xy.T).sum() + torch.trace(yy)
        var = torch.exp(2 * p["log_std"])
        error = (U1 * (U1 @ mean_moment)).sum() + 2 * (U1.T * cross).sum() + b_sq + (U1**2 * var).sum()
        rec = error / (2 * eta_dec**2) + 0.5 * dy * (_LOG_2PI + 2 * math.log(eta_dec))
        return rec + beta * _gaussian_kl_sum(torch, torch.trace(mean_moment), p["log_std"], eta_enc)

    root = _sqrt_psd(m.residual())

    def measured(p):
        return {"decoder_sv": _sv(p["U1"]), "encoder_sv": _sv(p["W2"] @ root),
                "encoder_std": np.sort(np.exp(p["log_std"]))[::-1]}

    return _Problem(shapes, loss, measured)


def _mhvae_problem(m: Moments, latent_dims: Sequence[int], beta1: float, beta2: float, eta_enc: float,
                   eta_dec: float, sigma1: float, sigma2: float | None, **_: Any) -> _Problem:
    torch = _torch()
    A = torch.as_tensor(m.xx)
    d0, (d1, d2) = m.d_x, latent_dims
    fixed = None if sigma2 is None else torch.full((d2,), math.log(sigma2), dtype=torch.float64)
    shapes = {"W1": (d1, d0), "U1": (d0, d1), "W2": (d2, d1), "U2": (d1, d2)} | \
        ({"log_std": (d2,)} if fixed is None else {})
    eye = torch.eye(d1, dtype=torch.float64)

    def loss(p):
        log_std = p["log_std"] if fixed is None else fixed
        W1, U1, W2, U2 = p["W1"], p["U1"], p["W2"], p["U2"]
        rec = _reconstruction(torch, A, U1, W1, sigma1**2 * (U1**2).sum(), eta_dec)
        z1_moment = W1 @ A @ W1.T + sigma1**2 * eye             # E[z₁z₁ᵀ]
        back = eye - U2 @ W2
        mismatch = (back * (back @ z1_moment)).sum() + (U2**2 * torch.exp(2 * log_std)).sum()
        level1 = mismatch / (2 * eta_dec**2) + 0.5 * d1 * (2 * math.log(eta_dec / sigma1) - 1)
        top = _gaussian_kl_sum(torch, (W2 * (W2 @ z1_moment)).sum(), log_std, eta_enc)
        return rec + beta1 * level1 + beta2 * top

    root = _sqrt_psd(m.xx)

    def measured(p):
        out = {"level1_encoder_sv": _sv(p["W1"] @ root)[:d1], "decoder_sv": _sv(p["U2"]),
               "encoder_sv": _sv(p["W2"])}
        if fixed is None:
            out["encoder_std"] = np.sort(np.exp(p["log_std"]))[::-1]
        return out

    return _Problem(shapes, loss, measured)


_PROBLEMS = {"vae": _vae_problem, "cvae": _cvae_problem, "mhvae": _mhvae_problem}


def _closed_form_values(prediction: Prediction, names: Sequence[str]) -> dict[str, np.ndarray]:
    values = {"decoder_sv": prediction.decoder_sv, "encoder_sv": prediction.encoder_sv,
              "encoder_std": prediction.encoder_std}
    if prediction.level1 is not None:
        values["level1_encoder_sv"] = prediction.level1["encoder_sv"]
    return {name: np.sort(np.asarray(values[name], float))[::-1] for name in names}


# -- the minimiser ------------------------------------------------------------------------------
def minimise(problem: _Problem, *, starts: int, seed: int, eta_enc: float,
             max_iterations: int = 20000) -> tuple[float, dict[str, np.ndarray]]:
    """Best (loss, parameters) over ``starts`` L-BFGS runs from random initial points."""
    torch = _torch()
    names = list(problem.shapes)
    sizes = [int(np.prod(problem.shapes[n])) for n in names]
    rng = np.random.default_rng(seed)

    def unpack(flat: np.ndarray) -> dict[str, Any]:
        params, offset = {}, 0
        for name, size in zip(names, sizes):
            params[name] = flat[offset:offset + size].reshape(problem.shapes[name])
            offset += size
        return params

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        tensor = torch.tensor(flat, dtype=torch.float64, requires_grad=True)
        value = problem.loss(unpack(tensor))
        (grad,) = torch.autograd.grad(value, tensor)
        return float(value.detach()), grad.numpy()

    best_value, best_flat = math.inf, None
    for start in range(starts):
        scale = (0.5, 0.05, 1.0, 0.01)[start % 4]           # small and large starts escape different saddles
        parts = []
        for name, size in zip(names, sizes):
            if name == "log_std":
                parts.append(math.log(eta_enc) + rng.normal(0.0, 0.5, size))
            else:
                parts.append(rng.normal(0.0, scale, size))
        result = minimize(objective, np.concatenate(parts), jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iterations, "maxfun": 4 * max_iterations,
                                   "maxcor": 30, "ftol": 1e-16, "gtol": 1e-11})
        if result.fun < best_value:
            best_value, best_flat = float(result.fun), result.x
    assert best_flat is not None
    return best_value, unpack(best_flat)


def verify(model: str, moments: Moments, *, starts: int = 8, seed: int = 0, rtol: float = 1e-6,
           **hyperparameters: Any) -> Verification:
    """Minimise the full loss of ``model`` numerically and compare with the closed form.

    Parameters
    ----------
    model : {"vae", "cvae", "mhvae"}
    moments : Moments
    starts : int
        Random starts of L-BFGS (the best is kept).
    seed : int
        Seed of the random starts.
    rtol : float
        Relative loss tolerance for :attr:`Verification.agrees`.
    **hyperparameters
        As for the matching ``predict_*`` function.
    """
    if model not in _PROBLEMS:
        raise ParameterError(f"unknown model {model!r}; choose one of {sorted(_PROBLEMS)}")
    if not isinstance(starts, int) or starts < 1:
        raise ParameterError(f"starts must be an integer ≥ 1, got {starts!r}")
    prediction = predict(model, moments, **hyperparameters)   # validates every hyper-parameter
    settings = dict(prediction.hyperparameters)
    settings.setdefault("encoder_std", None)
    problem = _PROBLEMS[model](moments, **settings)
    value, params = minimise(problem, starts=starts, seed=seed, eta_enc=settings["eta_enc"])
    measured = problem.measured(params)
    closed = _closed_form_values(prediction, list(measured))
    singular_values = {name: (closed[name], np.asarray(measured[name])[: closed[name].size]) for name in measured}
    gap = abs(value - prediction.loss) / max(abs(prediction.loss), 1e-300)
    return Verification(prediction=prediction, numerical_loss=value, relative_gap=gap,
                        singular_values=singular_values, starts=starts, rtol=rtol)
