"""Closed-form theory of posterior collapse in linear VAE, CVAE and MHVAE (Dang et al., ICLR 2024).

>>> from collapsekit.theory import Moments, predict_cvae
>>> m = Moments(xx=np.eye(3), xy=np.diag([1, 1, 0.5]), yy=np.diag([4, 2, 1]))   # doctest: +SKIP
>>> predict_cvae(m, latent_dim=3, eta_dec=0.9).n_active                        # doctest: +SKIP
2
"""

from collapsekit.theory.linear import (PREDICTORS, gaussian_kl, predict, predict_cvae, predict_mhvae,
                                       predict_vae, recommend_beta)
from collapsekit.theory.moments import Moments
from collapsekit.theory.prediction import Prediction

__all__ = ["Moments", "Prediction", "PREDICTORS", "gaussian_kl", "predict", "predict_cvae",
           "predict_mhvae", "predict_vae", "recommend_beta"]
