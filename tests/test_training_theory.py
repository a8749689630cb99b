"""The theorems verified by training, not only by minimisation: linear models trained by the
trainer reach the closed-form optimal loss of ``predict_*`` within 0.5 % and collapse exactly the
dimensions the theory predicts (KL < 0.01 nats and posterior std within 0.02 of η_enc)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from collapsekit.theory import Moments, predict_cvae, predict_mhvae, predict_vae
from collapsekit.training import RunConfig, evaluate, load_training_data, train
from collapsekit.training.trainer import build_objective_from_config

SYNTHETIC = "gaussian:eigs=9:4:1:0.25:0.04:0.01,n=2000,seed=1,exact=1"


def config(data: dict, model: dict, objective: dict, *, lr: float = 3e-2, batch: int = 250,
           epochs: int = 200) -> RunConfig:
    return RunConfig.parse({"data": data, "model": {"arch": "linear", **model}, "objective": objective,
                            "optim": {"lr": lr, "lr_schedule": "cosine"},
                            "train": {"epochs": epochs, "batch_size": batch, "progress": False, "seed": 0}})


def between(values: np.ndarray, index: int) -> float:
    """A value between values[index−1] and values[index] (geometric mean), away from both."""
    return float(np.sqrt(values[index - 1] * values[index]))


def moments(cfg: RunConfig) -> Moments:
    data = load_training_data(cfg)
    y = None if data.y is None else data.y.double().numpy()
    return Moments.from_data(data.x.double().numpy(), y)


def measured_collapse(result, cfg: RunConfig) -> tuple[float, np.ndarray, np.ndarray]:
    """Loss (many samples), KL per top-level dimension and mean posterior std per dimension."""
    data = load_training_data(cfg)
    objective, _ = build_objective_from_config(cfg)
    report = evaluate(result.model, objective, data, n_samples=256)
    with torch.no_grad():
        output = result.model(data.x, data.y, n_samples=1)
    std = output.levels[-1].posterior.scale.reshape(-1, output.levels[-1].dim).mean(0).numpy()
    return report["loss"], np.asarray(report["kl_per_dim"][-1]), std


def check(tmp_path, cfg: RunConfig, prediction) -> None:
    result = train(cfg, tmp_path / "run")
    loss, kl, std = measured_collapse(result, cfg)
    assert abs(loss - prediction.loss) <= 0.005 * abs(prediction.loss), (loss, prediction.loss)
    eta_enc = cfg.model.eta_enc
    collapsed = (kl < 0.01) & (np.abs(std - eta_enc) < 0.02)
    assert collapsed.sum() == prediction.n_collapsed, (kl, std, prediction.collapsed)
    # the dimensions kept active carry clearly more than the collapse threshold
    assert np.sort(kl)[::-1][: prediction.n_active].min() > 0.01


def test_linear_vae_synthetic(tmp_path):
    cfg = config({"spec": SYNTHETIC}, {"kind": "vae", "latent_dims": [4]}, {"beta": 0.5})
    prediction = predict_vae(moments(cfg), 4, beta=0.5)
    assert prediction.n_active == 3 and prediction.n_collapsed == 1
    check(tmp_path, cfg, prediction)


def test_linear_vae_digits(tmp_path):
    cfg = config({"spec": "digits"}, {"kind": "vae", "latent_dims": [8]}, {"beta": 1.0}, lr=1e-2, batch=128)
    beta = between(moments(cfg).vae_spectrum() ** 2, 5)            # η_dec = 1: five dimensions stay active
    cfg = cfg.with_overrides({"objective.beta": beta})
    prediction = predict_vae(moments(cfg), 8, beta=beta)
    assert prediction.n_active == 5
    check(tmp_path, cfg, prediction)


def test_linear_cvae_synthetic(tmp_path):
    cfg = config({"spec": "correlated:rho=1/2,d=6,n=2000,seed=4"},
                 {"kind": "cvae", "latent_dims": [4], "eta_dec": 0.6}, {"beta": 1.0})
    check(tmp_path, cfg, predict_cvae(moments(cfg), 4, beta=1.0, eta_dec=0.6))


def test_linear_cvae_digits_quadrants(tmp_path):
    cfg = config({"spec": "digits", "split": "quadrants"}, {"kind": "cvae", "latent_dims": [8]}, {"beta": 1.0},
                 lr=1e-2, batch=128)
    beta = between(moments(cfg).cvae_spectrum(), 4)                # four dimensions stay active
    cfg = cfg.with_overrides({"objective.beta": beta})
    prediction = predict_cvae(moments(cfg), 8, beta=beta)
    assert prediction.n_active == 4 and prediction.n_collapsed == 4
    check(tmp_path, cfg, prediction)


@pytest.mark.parametrize("sigma2", ["learnable", 0.8])
def test_linear_mhvae_synthetic(tmp_path, sigma2):
    # β₂ = 0.3 with σ₁ = 0.5: with learnable Σ₂, z₂ dimension i collapses iff θ_i < 0.6 (Theorem 3)
    cfg = config({"spec": SYNTHETIC}, {"kind": "hvae", "latent_dims": [4, 4], "sigma1": 0.5, "sigma2": sigma2},
                 {"beta": [1.0, 0.3]})
    prediction = predict_mhvae(moments(cfg), (4, 4), beta1=1.0, beta2=0.3, sigma1=0.5,
                               sigma2=None if sigma2 == "learnable" else sigma2)
    assert prediction.n_collapsed == (1 if sigma2 == "learnable" else 0)
    check(tmp_path, cfg, prediction)


@pytest.mark.parametrize("sigma2", ["learnable", 0.8])
def test_linear_mhvae_digits(tmp_path, sigma2):
    cfg = config({"spec": "digits"}, {"kind": "hvae", "latent_dims": [6, 6], "sigma1": 0.5, "sigma2": sigma2},
                 {"beta": [1.0, 1.0]}, lr=1e-2, batch=128)
    theta = moments(cfg).vae_spectrum()
    # choose β₂ so that z₂ keeps one dimension: collapse iff θ_i ≤ β₂/(√β₁σ₁) (η_dec = 1, β₂ > β₁σ₁²);
    # digits' θ₁ = 3.2 stands far from θ₂ = 0.84, so the threshold sits away from every θ
    beta2 = 0.5 * between(theta, 1)
    cfg = cfg.with_overrides({"objective.beta": [1.0, beta2]})
    prediction = predict_mhvae(moments(cfg), (6, 6), beta1=1.0, beta2=beta2, sigma1=0.5,
                               sigma2=None if sigma2 == "learnable" else sigma2)
    assert prediction.n_active == 1
    check(tmp_path, cfg, prediction)
