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

from collapsekit._io import jsonable
from collapsekit._threads import single_threaded
from collapsekit.errors import ParameterError
from collapsekit.theory.linear import predict
from collapsekit.theory.moments import Moments
from collapsekit.theory.prediction import Prediction

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
        return jsonable({
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


def _whitener(matrix: np.ndarray, whiten: bool) -> np.ndarray:
    """T with Tᵀ·E[xxᵀ]·T = I on the range of E[xxᵀ] (``whiten``), or the identity.

    Encoders are parameterised as W = V·Tᵀ. This is exact: x has no component outside the
    range of E[xxᵀ], so the dropped directions of W never change the loss; it makes L-BFGS
    independent of the data's condition number (MNIST borders make E[xxᵀ] singular).
    """
    if not whiten:
        return np.eye(matrix.shape[0])
    phi, basis = np.linalg.eigh(matrix)
    keep = phi > phi.max(initial=0.0) * matrix.shape[0] * np.finfo(np.float64).eps
    if not keep.any():
        raise ParameterError("the data's second moment is zero: there is nothing to encode")
    return basis[:, keep] / np.sqrt(phi[keep])


def _squared_error(torch, target_trace, cross, inputs, U, V):
    """E‖t − U·V·u‖² from tr E[ttᵀ], cross = E[u tᵀ] and inputs = E[u uᵀ]: O(r²k + r·d·k)."""
    return target_trace - 2 * (U * (cross.T @ V.T)).sum() + ((U.T @ U) * (V @ inputs @ V.T)).sum()


def _gaussian_constant(dim: int, eta_dec: float) -> float:
    return 0.5 * dim * (_LOG_2PI + 2 * math.log(eta_dec))


def _vae_problem(m: Moments, latent_dim: int, beta: float, eta_enc: float, eta_dec: float,
                 encoder_std: float | Sequence[float] | None, whiten: bool = True, **_: Any) -> _Problem:
    torch = _torch()
    T = _whitener(m.xx, whiten)
    inputs, cross = (torch.as_tensor(a) for a in (T.T @ m.xx @ T, T.T @ m.xx))   # u = Tᵀx, target x
    trace, d, k, r = float(np.trace(m.xx)), m.d_x, latent_dim, T.shape[1]
    fixed = None if encoder_std is None else torch.as_tensor(
        np.log(np.broadcast_to(np.asarray(encoder_std, float), (k,))).copy())
    shapes: dict[str, tuple[int, ...]] = {"U": (d, k), "V": (k, r)} | ({"log_std": (k,)} if fixed is None else {})

    def loss(p):
        log_std = p["log_std"] if fixed is None else fixed
        U, V = p["U"], p["V"]
        error = _squared_error(torch, trace, cross, inputs, U, V) + (U**2 * torch.exp(2 * log_std)).sum()
        rec = error / (2 * eta_dec**2) + _gaussian_constant(d, eta_dec)
        return rec + beta * _gaussian_kl_sum(torch, (V * (V @ inputs)).sum(), log_std, eta_enc)

    root = _sqrt_psd(m.xx)

    def measured(p):
        out = {"decoder_sv": _sv(p["U"]), "encoder_sv": _sv(p["V"] @ T.T @ root)}
        if fixed is None:
            out["encoder_std"] = np.sort(np.exp(p["log_std"]))[::-1]
        return out

    return _Problem(shapes, loss, measured)


def _cvae_problem(m: Moments, latent_dim: int, beta: float, eta_enc: float, eta_dec: float,
                  whiten: bool = True, **_: Any) -> _Problem:
    torch = _torch()
    assert m.xy is not None and m.yy is not None
    tx, ty = _whitener(m.xx, whiten), _whitener(m.yy, whiten)
    rx, ry, dy, k = tx.shape[1], ty.shape[1], m.yy.shape[0], latent_dim
    # Encoder input u = [Txᵀx; Tyᵀy]; the target is y; the decoder adds G·(Txᵀx) (U₂ = G·Txᵀ).
    joint = np.block([[tx.T @ m.xx @ tx, tx.T @ m.xy @ ty], [ty.T @ m.xy.T @ tx, ty.T @ m.yy @ ty]])
    inputs, cross = torch.as_tensor(joint), torch.as_tensor(np.vstack([tx.T @ m.xy, ty.T @ m.yy]))
    trace = float(np.trace(m.yy))
    shapes: dict[str, tuple[int, ...]] = {"V": (k, rx + ry), "U1": (dy, k), "G": (dy, rx), "log_std": (k,)}

    def loss(p):
        V, U1, G = p["V"], p["U1"], p["G"]
        # error of U₁V·u + G·u_x: the low-rank part, the regression part, and their cross term
        error = (_squared_error(torch, trace, cross, inputs, U1, V)
                 - 2 * (G * cross[:rx].T).sum() + (G * (G @ inputs[:rx, :rx])).sum()
                 + 2 * (U1 * (G @ inputs[:rx] @ V.T)).sum())
        error = error + (U1**2 * torch.exp(2 * p["log_std"])).sum()
        rec = error / (2 * eta_dec**2) + _gaussian_constant(dy, eta_dec)
        return rec + beta * _gaussian_kl_sum(torch, (V * (V @ inputs)).sum(), p["log_std"], eta_enc)

    root = _sqrt_psd(m.residual())

    def measured(p):
        w2 = p["V"][:, rx:] @ ty.T
        return {"decoder_sv": _sv(p["U1"]), "encoder_sv": _sv(w2 @ root),
                "encoder_std": np.sort(np.exp(p["log_std"]))[::-1]}

    return _Problem(shapes, loss, measured)


def _mhvae_problem(m: Moments, latent_dims: Sequence[int], beta1: float, beta2: float, eta_enc: float,
                   eta_dec: float, sigma1: float, sigma2: float | None, whiten: bool = True,
                   **_: Any) -> _Problem:
    torch = _torch()
    T = _whitener(m.xx, whiten)
    inputs, cross = (torch.as_tensor(a) for a in (T.T @ m.xx @ T, T.T @ m.xx))
    trace, d0, (d1, d2), r = float(np.trace(m.xx)), m.d_x, latent_dims, T.shape[1]
    fixed = None if sigma2 is None else torch.full((d2,), math.log(sigma2), dtype=torch.float64)
    shapes: dict[str, tuple[int, ...]] = {"V1": (d1, r), "U1": (d0, d1), "W2": (d2, d1), "U2": (d1, d2)} | \
        ({"log_std": (d2,)} if fixed is None else {})
    eye = torch.eye(d1, dtype=torch.float64)

    def loss(p):
        log_std = p["log_std"] if fixed is None else fixed
        V1, U1, W2, U2 = p["V1"], p["U1"], p["W2"], p["U2"]
        error = _squared_error(torch, trace, cross, inputs, U1, V1) + sigma1**2 * (U1**2).sum()
        rec = error / (2 * eta_dec**2) + _gaussian_constant(d0, eta_dec)
        z1_moment = V1 @ inputs @ V1.T + sigma1**2 * eye       # E[z₁z₁ᵀ]
        back = eye - U2 @ W2
        mismatch = (back * (back @ z1_moment)).sum() + (U2**2 * torch.exp(2 * log_std)).sum()
        level1 = mismatch / (2 * eta_dec**2) + 0.5 * d1 * (2 * math.log(eta_dec / sigma1) - 1)
        top = _gaussian_kl_sum(torch, (W2 * (W2 @ z1_moment)).sum(), log_std, eta_enc)
        return rec + beta1 * level1 + beta2 * top

    root = _sqrt_psd(m.xx)

    def measured(p):
        out = {"level1_encoder_sv": _sv(p["V1"] @ T.T @ root)[:d1], "decoder_sv": _sv(p["U2"]),
               "encoder_sv": _sv(p["W2"])}
        if fixed is None:
            out["encoder_std"] = np.sort(np.exp(p["log_std"]))[::-1]
        return out

    return _Problem(shapes, loss, measured)


_PROBLEMS: dict[str, Callable[..., _Problem]] = {"vae": _vae_problem, "cvae": _cvae_problem, "mhvae": _mhvae_problem}


def _closed_form_values(prediction: Prediction, names: Sequence[str]) -> dict[str, np.ndarray]:
    values = {"decoder_sv": prediction.decoder_sv, "encoder_sv": prediction.encoder_sv,
              "encoder_std": prediction.encoder_std}
    if prediction.level1 is not None:
        values["level1_encoder_sv"] = prediction.level1["encoder_sv"]
    return {name: np.sort(np.asarray(values[name], float))[::-1] for name in names}


# -- the minimiser ------------------------------------------------------------------------------
def minimise(problem: _Problem, *, starts: int, seed: int, eta_enc: float, max_iterations: int = 20000,
             on_start_done: Callable[[], None] | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """Best (loss, parameters) over ``starts`` L-BFGS runs from random initial points.

    ``on_start_done`` is called after each run (for progress bars).
    """
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
    with single_threaded():
        for start in range(starts):
            scale = (0.5, 0.05, 1.0, 0.01)[start % 4]       # small and large starts escape different saddles
            parts = [math.log(eta_enc) + rng.normal(0.0, 0.5, size) if name == "log_std"
                     else rng.normal(0.0, scale, size) for name, size in zip(names, sizes)]
            result = minimize(objective, np.concatenate(parts), jac=True, method="L-BFGS-B",
                              options={"maxiter": max_iterations, "maxfun": 4 * max_iterations,
                                       "maxcor": 30, "ftol": 1e-16, "gtol": 1e-11})
            if result.fun < best_value:
                best_value, best_flat = float(result.fun), result.x
            if on_start_done is not None:
                on_start_done()
    assert best_flat is not None
    return best_value, unpack(best_flat)


def verify(model: str, moments: Moments, *, starts: int = 8, seed: int = 0, rtol: float = 1e-6,
           whiten: bool = True, on_start_done: Callable[[], None] | None = None,
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
    whiten : bool
        Parameterise encoders in whitened input coordinates (exact, and well conditioned on
        real data); ``False`` minimises over the raw matrices W, as the model is written.
    on_start_done : callable, optional
        Called after each L-BFGS start (progress reporting).
    **hyperparameters
        As for the matching ``predict_*`` function.
    """
    if model not in _PROBLEMS:
        raise ParameterError(f"unknown model {model!r}; choose one of {sorted(_PROBLEMS)}")
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise ParameterError(f"starts must be an integer ≥ 1, got {starts!r}")
    prediction = predict(model, moments, **hyperparameters)   # validates every hyper-parameter
    settings = dict(prediction.hyperparameters)
    settings.setdefault("encoder_std", None)
    problem = _PROBLEMS[model](moments, whiten=whiten, **settings)
    value, params = minimise(problem, starts=int(starts), seed=seed, eta_enc=settings["eta_enc"],
                             on_start_done=on_start_done)
    measured = problem.measured(params)
    closed = _closed_form_values(prediction, list(measured))
    singular_values = {name: (closed[name], np.asarray(measured[name])[: closed[name].size]) for name in measured}
    gap = abs(value - prediction.loss) / max(abs(prediction.loss), 1e-300)
    return Verification(prediction=prediction, numerical_loss=value, relative_gap=gap,
                        singular_values=singular_values, starts=starts, rtol=rtol)
