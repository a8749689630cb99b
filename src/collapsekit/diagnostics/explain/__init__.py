"""Why did these latent dimensions collapse, and what setting would keep them? Causes and prescriptions.

One engine, shared by :class:`~collapsekit.training.monitor.CollapseMonitor` (during training) and by
the reports (after training): given the dimensions *measured* collapsed and what is known of the run
(model kind, data moments, hyper-parameters, KL schedule), :func:`explain_collapse` returns one
:class:`Explanation` per cause that applies, most specific first:

``loss_reduction``
    The reconstruction loss is averaged over the D features instead of summed: a β·D model.
``warmup``
    The KL warm-up is not over when the run ends, or β is still ramping now.
``cvae_correlation``
    CVAE: x already explains most of y, so the residual left to z is small (Theorem 2).
``learnable_sigma2``
    Hierarchy: the top level's encoder variance Σ₂ is learnable (Theorem 3); a fixed σ₂ cannot
    collapse exactly (Theorem 5).
``beta``
    β·η_dec² exceeds the data's spectrum: the closed forms say how many dimensions the data support
    and which β keeps more (``predicted`` holds the numbers; "(predicted)" in the text).
``rank``
    More latent dimensions than the data have nonzero modes: no β keeps the extra ones.
``not_predicted``
    The theory predicts no collapse at these settings: the cause is outside the linear theory.
``generic``
    Nothing is known about the data: the usual remedies, without invented numbers.

Numbers come from :mod:`collapsekit.theory` (never re-derived here). For a model that is not linear
they are a *linear-theory estimate* (the text says so); for the linear models they are exact.
β is the true KL weight, KL in nats (docs/theory.md §1.0).
"""


from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from collapsekit.diagnostics.explain.causes import (MAX_BETA_REDUCTION, MIN_KEPT_NATS, explain_beta_or_rank,
                                                    explain_cvae_correlation, explain_generic,
                                                    explain_learnable_sigma2, explain_loss_reduction, explain_warmup)
from collapsekit.diagnostics.explain.explanation import CAUSES, ESTIMATE, EXACT, Explanation, ScheduleInfo
from collapsekit.diagnostics.explain.setting import Setting, read_hyper
from collapsekit.diagnostics.explain.text import collapse_summary, format_explanations
from collapsekit.diagnostics.explain.theory import LevelTheory, is_top
from collapsekit.errors import ParameterError
from collapsekit.theory import Moments

__all__ = ["CAUSES", "ESTIMATE", "EXACT", "MAX_BETA_REDUCTION", "MIN_KEPT_NATS", "Explanation",
           "ScheduleInfo", "Setting", "collapse_summary", "explain_collapse", "format_explanations", "read_hyper"]


def explain_collapse(collapsed: Sequence[int], latent_dim: int, *, model_kind: str = "vae",
                     moments: Moments | None = None, hyper: Mapping[str, Any] | None = None, level: str = "z",
                     schedule: ScheduleInfo | None = None, linear: bool = False, loss_reduction: str = "sum",
                     n_features: int | None = None) -> list[Explanation]:
    """Likely causes of a measured collapse, each with a prescription.

    Parameters
    ----------
    collapsed : sequence of int
        Indices of the dimensions measured collapsed in ``level``.
    latent_dim : int
        Size of ``level``.
    model_kind : {"vae", "cvae", "hvae"} or a registered model family
        The closed forms describe the built-in three; any other family gets the generic explanation.
    moments : Moments, optional
        Raw second moments of the training data (``Moments.from_data(x[, y])``); without them no
        number is predicted.
    hyper : dict, optional
        ``beta`` (number, or one per level bottom to top), ``eta_enc``, ``eta_dec``, ``encoder_std``,
        ``sigma1``, ``sigma2``, ``latent_dims`` (see :func:`read_hyper`).
    level : str
        The level's name: ``"z"``, or ``"z1"``, ``"z2"``, ... bottom to top in a hierarchy. The
        closed forms describe a one-level model's ``z`` and the top level of a two-level hierarchy.
    schedule : ScheduleInfo, optional
        Where the KL schedule stands; the theory then uses the KL weight in force, β·scale.
    linear : bool
        True for the theory's linear models: numbers are exact. Otherwise they are labelled
        "linear-theory estimate".
    loss_reduction : {"sum", "mean"}
        How the user's reconstruction loss reduces over features (plain loops); ``"mean"`` adds the
        β·D hint.
    n_features : int, optional
        D, the number of features the reconstruction is over (for that hint).

    Returns
    -------
    list of Explanation
        Empty when ``collapsed`` is empty; otherwise at least one (``generic`` when nothing else applies).
    """
    dims = sorted({int(d) for d in collapsed})
    latent_dim = int(latent_dim)
    if latent_dim < 1:
        raise ParameterError(f"latent_dim must be ≥ 1, got {latent_dim}")
    if dims and (dims[0] < 0 or dims[-1] >= latent_dim):
        raise ParameterError(f"collapsed: dimension indices must be in 0..{latent_dim - 1}, got {dims}")
    if loss_reduction not in ("sum", "mean"):
        raise ParameterError(f"loss_reduction must be 'sum' or 'mean', got {loss_reduction!r}")
    if moments is not None and not isinstance(moments, Moments):
        raise ParameterError("moments must be a collapsekit.theory.Moments; build one with Moments.from_data(x[, y])")
    setting = read_hyper(model_kind, hyper)
    if not dims:
        return []
    out: list[Explanation] = []
    if loss_reduction == "mean":
        out.append(explain_loss_reduction(level, setting, n_features))
    scale = 1.0 if schedule is None or schedule.scale is None else float(schedule.scale)
    if schedule is not None:
        warm = explain_warmup(level, schedule)
        if warm is not None:
            out.append(warm)
    label = EXACT if linear else ESTIMATE
    theory = LevelTheory.build(setting, moments, level, latent_dim, scale)
    if setting.closed_form == "cvae" and theory is not None:
        corr = explain_cvae_correlation(level, setting, theory, label)
        if corr is not None:
            out.append(corr)
    if setting.closed_form == "mhvae" and is_top(level, setting) and setting.sigma2_learnable:
        sig = explain_learnable_sigma2(level, setting, scale)
        if sig is not None:
            out.append(sig)
    if theory is not None:
        out.extend(explain_beta_or_rank(level, setting, theory, len(dims), latent_dim, label))
    if not any(e.cause in ("beta", "rank", "learnable_sigma2", "cvae_correlation", "not_predicted") for e in out):
        out.append(explain_generic(level, setting, moments is not None and theory is None))
    order = {cause: i for i, cause in enumerate(CAUSES)}
    return sorted(out, key=lambda e: order[e.cause])
