"""The words of a collapse warning: its first line, the full text, and the numbers and settings in it."""

from __future__ import annotations

from collections.abc import Sequence

from collapsekit.activity import DURING_TRAINING, KL_ACTIVE_THRESHOLD
from collapsekit.diagnostics.explain.explanation import Explanation
from collapsekit.diagnostics.explain.setting import Setting
from collapsekit.formatting import cell


def short(value: float) -> str:
    """A number for a person: 3 significant digits, no trailing zeros (:func:`collapsekit.formatting.cell`)."""
    return cell(value, 3)


def _dims_text(dims: Sequence[int], limit: int = 24) -> str:
    dims = list(dims)
    shown = ", ".join(str(d) for d in dims[:limit])
    return shown + (f", … ({len(dims) - limit} more)" if len(dims) > limit else "")


def collapse_summary(collapsed: Sequence[int], latent_dim: int, *, level: str = "z", epochs: int | None = None,
                     n_collapsed_now: int | None = None) -> str:
    """The first line of a collapse warning: how many, which, by what measure.

    The count is the headline rule (:mod:`collapsekit.activity`) applied to the epoch's batches;
    ``collapsed`` lists the dimensions collapsed for at least ``epochs`` epochs (those the warning is about).

    >>> collapse_summary([0, 2], 4, level="z", epochs=2)
    "z: 2 of 4 dimensions collapsed (mean KL < 0.01 nats on this epoch's batches, for ≥ 2 epochs): 0, 2"
    >>> collapse_summary([0, 2], 4, level="z", epochs=2, n_collapsed_now=3)
    "z: 3 of 4 dimensions collapsed (mean KL < 0.01 nats on this epoch's batches; 2 of them for ≥ 2 epochs): 0, 2"
    """
    now = len(collapsed) if n_collapsed_now is None else int(n_collapsed_now)
    measure = f"mean KL < {short(KL_ACTIVE_THRESHOLD)} nats {DURING_TRAINING}"
    if epochs is not None:
        span = f"for ≥ {epochs} epoch{'s' if epochs != 1 else ''}"
        measure += f", {span}" if now == len(collapsed) else f"; {len(collapsed)} of them {span}"
    noun = "dimension" if latent_dim == 1 else "dimensions"
    return f"{level}: {now} of {latent_dim} {noun} collapsed ({measure}): {_dims_text(collapsed)}"


def format_explanations(summary: str, explanations: Sequence[Explanation]) -> str:
    """The full text of a warning: the summary, then one line per cause ("what is wrong. → what to change")."""
    lines = [summary]
    lines += [f"  - {e}" for e in explanations]
    return "\n".join(lines)


def settings_text(setting: Setting, beta_name: str, beta_value: float, extra: Sequence[str] = (),
                   scale: float = 1.0) -> str:
    """"β = 0.5, η_dec = 1 and η_enc = 2": the settings a cause is about, with the weight in force."""
    weight = f"{beta_name} = {short(beta_value)}"
    if scale != 1.0:
        weight += f" (the weight in force: {100 * scale:.0f}% of the final {short(beta_value / scale)})"
    parts = [*extra, weight, f"η_dec = {short(setting.eta_dec)}"]
    if setting.eta_enc != 1.0:
        parts.append(f"η_enc = {short(setting.eta_enc)}")
    return ", ".join(parts[:-1]) + " and " + parts[-1]
