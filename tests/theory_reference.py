"""docs/theory.md §2.6 numpy reference, verbatim: the independent oracle the theory tests compare against.

These few lines are the spec's own implementation (checked there against direct minimisation);
collapsekit's closed forms are written separately in src/collapsekit/theory/linear.py.
"""

import numpy as np


def vae_learnable(theta, beta, ee, ed, d1):
    th = np.asarray(theta, float)[:d1]; g = np.clip(th**2 - beta*ed**2, 0, None)
    omega = np.sqrt(g)/ee; lam = ee*np.sqrt(g)/th
    sigma = np.where(th >= np.sqrt(beta)*ed, np.sqrt(beta)*ee*ed/th, ee)
    return omega, lam, sigma, th**2 > beta*ed**2      # last: active mask


def mhvae_learnable_sigma2(theta, s1, b1, b2, ee, ed, d1):
    th = np.asarray(theta, float)[:d1]; bp = b2/b1; tau = bp*ed**2
    tA = th**2*s1**2/(b2*ed**2); tB = th*s1/np.sqrt(b1)
    t = np.where(tA >= tau, np.maximum(tA, s1**2), np.maximum(tB, s1**2))
    lam = np.sqrt(t - s1**2); omega = np.sqrt(np.clip(t - tau, 0, None))/ee
    s2 = np.where(t >= tau, np.sqrt(bp)*ee*ed/np.sqrt(t), ee)
    return lam, omega, s2


def mhvae_fixed(theta, s1, s2, b1, b2, ee, ed, d1):
    c = ed/ee; th = np.asarray(theta, float)[:d1]; bp = b2/b1; tau = bp*c**2*s2**2
    tA = (th**2*s1**2/(np.sqrt(b1*b2)*c*s2))**(2/3); tB = th*s1/np.sqrt(b1)
    t = np.where(tA >= tau, np.maximum(tA, s1**2), np.maximum(tB, s1**2))
    lam = np.sqrt(t - s1**2)
    omega = np.sqrt(np.clip(np.sqrt(bp)*c*(np.sqrt(t) - np.sqrt(bp)*c*s2)/s2, 0, None))
    return lam, omega
