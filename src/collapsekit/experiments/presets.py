"""The paper's experiments as presets: ``collapsekit reproduce NAME``.

::

    collapsekit reproduce --list
    collapsekit reproduce cvae-beta-eta                        # quick scale, into reproduce/cvae-beta-eta/
    collapsekit reproduce cvae-linear --scale paper --data mnist:~/data/mnist
    collapsekit reproduce all --scale quick --report docs/reproduction.md

One preset per experiment E1–E14 of Dang et al. (ICLR 2024) as docs/experiments.md §1.3 lists them. Each
trains its configurations through the sweep machinery (batched and resumable: a rerun skips
finished runs), measures every trained model with the diagnostics (KL per dimension, active
dimensions, importance-sampled NLL, Burda active units) beside the closed-form prediction, and
writes into its output directory:

``table.csv``, ``table.md``
    One row per trained setting (the theorem presets: one per verified setting).
``figure.png``
    Measured against predicted (active dimensions against β, reconstructions, ...).
``result.json``
    The rows, the settings, the notes and the verdict on the paper's qualitative claim,
    computed from the measured numbers: ``holds`` true, false, or null (inconclusive).
``runs/``
    The training runs (sweep directories).

Two scales: ``paper`` (the paper's epochs, sizes, optimiser, clipping and seed, on the full MNIST
given with ``--data``) and ``quick`` (minutes in all on a laptop CPU: fewer epochs, part of each
grid, smaller data; each preset's notes say what changed). Both train and measure on ``device``
(``--device``): ``auto`` (the default) is CUDA when available, else the CPU; sweeps then give each
worker a GPU of its own.

β is the true KL weight everywhere. The paper's nonlinear scripts train ``‖y−μ‖²/η_dec² + β·KL``,
a model with true β = nominal/2: those presets train nominal/2 and show both values.

Importing this module does not import torch (the CLI imports it for every verb).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from collapsekit._io import atomic_path
from collapsekit.errors import ParameterError
from collapsekit.experiments.reproduction.preset import Preset

if TYPE_CHECKING:
    from collapsekit.experiments.reproduction.outputs import PresetResult

#: Scales a preset runs at.
SCALES: tuple[str, ...] = ("quick", "paper")
#: Where a preset writes when no ``--out`` is given: ``reproduce/NAME``.
DEFAULT_ROOT = Path("reproduce")


_R = "collapsekit.experiments.reproduction"

#: Every preset, in the paper's order (E1 … E14); :func:`register_preset` adds more after them.
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("cvae-beta-eta", "E1", "CVAE varying β and η_dec; log-likelihood, KL, AU of CVAEs",
           "ReLU CVAE on the MNIST quadrant split: a β sweep at η_dec=1 and an η_dec sweep at fixed β",
           "higher β or higher η_dec makes the CVAE collapse more latent dimensions", 30, f"{_R}.cvae:beta_eta"),
    Preset("cvae-digits", "E2", "Collapse level of MNIST digit datasets",
           "a CVAE trained on each digit's images alone: collapse level per digit against the theory's θ(E_digit)",
           "the collapse level of each digit's data set follows its spectrum θ(E_digit) against the threshold "
           "βη_dec²: digits the theory predicts to collapse more do collapse more", 30, f"{_R}.cvae:digits"),
    Preset("mhvae-beta-eta", "E3", "HVAE varying β₁, β₂ and η_enc",
           "ReLU MHVAE on MNIST: sweeps of β₁, of β₂ and of η_enc; z₂ collapse measured and predicted",
           "larger β₁ and smaller β₂ protect z₂ from collapse (η_enc does not enter the condition when Σ₂ "
           "is learnable)", 35, f"{_R}.mhvae:beta_eta"),
    Preset("mhvae-samples", "E4", "Samples reconstructed from ReLU MHVAE",
           "ReLU MHVAE on a (β₁, β₂) grid: reconstructions through z₂, and z₂ collapse",
           "raising β₂ collapses z₂ and degrades reconstructions through it; raising β₁ protects z₂", 20,
           f"{_R}.mhvae:samples"),
    Preset("vae-learnable-sigma", "E5", "VAE: learnable vs unlearnable Σ",
           "linear VAE (5 latent dims) with a learnable encoder variance and with a fixed one, across β",
           "a learnable encoder variance collapses dimensions where a fixed one (σ ≠ η_enc) does not: with Σ "
           "fixed the posterior cannot equal the prior (Theorem 1)", 20, f"{_R}.vae:learnable_sigma", exact=True),
    Preset("vae-sigma-metrics", "E6", "Log-likelihood, KL, AU of VAEs with learnable / unlearnable Σ",
           "ReLU VAE (784-256-16) with learnable and with fixed encoder variance: KL, NLL, AU",
           "with a learnable encoder variance latent dimensions collapse (KL → 0); with a fixed one they do not",
           20, f"{_R}.vae:sigma_metrics"),
    Preset("cvae-linear", "E7", "Linear CVAE experiment",
           "linear CVAE on the MNIST quadrant split across β: measured active dims against #{θ_i(E) > β}",
           "the number of active dimensions of the linear CVAE is #{i: θ_i(E) > βη_dec²}; it falls as β grows",
           35, f"{_R}.cvae:linear", exact=True),
    Preset("theorem2", "E8", "Verification of Theorem 2",
           "linear CVAE: closed form against direct numerical minimisation, and a trained linear CVAE",
           "Theorem 2's closed form is the global optimum of the linear CVAE (numerical minimisation and "
           "training reach it, with its collapsed dimensions)", 10, f"{_R}.theorems:theorem2", exact=True),
    Preset("cvae-correlation", "E9", "Effect of x–y correlation",
           "ReLU CVAE on synthetic pairs y~N(0,I), x=ρy+√(1−ρ²)ε for ρ ∈ {0, 1/8, 1/4, 1/2, 1}",
           "the more x and y are correlated, the more the CVAE collapses", 15, f"{_R}.cvae:correlation"),
    Preset("mhvae-cnn", "E10", "Samples from CNN MHVAE",
           "convolutional MHVAE on a (β₁, β₂) grid: reconstructions through z₂, and z₂ collapse",
           "raising β₂ collapses z₂ and degrades reconstructions through it; raising β₁ protects z₂", 30,
           f"{_R}.mhvae:cnn"),
    Preset("mhvae-linear", "E11", "Linear MHVAEs",
           "linear MHVAE (learnable Σ₂) across β₂: measured z₂ active dims against Theorem 3",
           "z₂ dimension i is active iff β₂ < max(β₁σ₁², √β₁σ₁θ_i)/η_dec² (Theorem 3): z₂ collapses as β₂ grows",
           25, f"{_R}.mhvae:linear", exact=True),
    Preset("theorem3", "E12", "Verification of Theorem 3",
           "linear MHVAE with learnable Σ₂: closed form against numerical minimisation, and a trained model",
           "Theorem 3's closed form is the global optimum of the linear MHVAE with learnable Σ₂", 10,
           f"{_R}.theorems:theorem3", exact=True),
    Preset("theorem5", "E13", "Verification of Theorem 5",
           "linear MHVAE with fixed Σ₂: closed form against numerical minimisation, and a trained model",
           "Theorem 5's closed form is the global optimum of the linear MHVAE with fixed Σ₂; with σ₂ ≠ η_enc "
           "z₂ can be inactive but never collapsed", 10, f"{_R}.theorems:theorem5", exact=True),
    Preset("mhvae-metrics", "E14", "Log-likelihood, KL, AU of HVAEs",
           "ReLU MHVAE on MNIST: NLL, KL and AU of z₂ across β₁, β₂ and η_enc",
           "larger β₂ collapses z₂ (lower KL and AU), larger β₁ protects it; the NLL shows the cost", 45,
           f"{_R}.mhvae:metrics"),
)}


def register_preset(preset: Preset) -> Preset:
    """Add a preset: from then on ``collapsekit reproduce NAME`` runs it, ``--list`` and ``all`` include it and
    the combined report has its section. Its runner may be a function (``runner=my_runner``) as well as a
    ``"module:function"`` string. Undo with :func:`unregister_preset`.

    Raises
    ------
    ParameterError
        When the name is taken, is ``all`` or holds a comma or a space (names are typed on the command line).
    """
    name = preset.name
    if not name or name == "all" or any(ch in name for ch in ", \t"):
        raise ParameterError(f"a preset's name must be one word other than 'all', got {name!r}")
    if name in PRESETS:
        raise ParameterError(f"preset {name!r} is already registered")
    PRESETS[name] = preset
    return preset


def unregister_preset(name: str) -> None:
    """Remove a preset :func:`register_preset` added (nothing happens for an unknown name)."""
    PRESETS.pop(name, None)


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises
    ------
    ParameterError
        For an unknown name (listing the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ParameterError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)} "
                             "(or 'all'; collapsekit reproduce --list describes them)") from None


def select(names: str) -> list[Preset]:
    """``all``, one name, or a comma-separated list of names → presets, in the paper's order."""
    text = names.strip()
    if text == "all":
        return list(PRESETS.values())
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    if not wanted:
        raise ParameterError("name a preset (collapsekit reproduce --list shows them) or 'all'")
    chosen = {get_preset(name).name for name in wanted}
    return [preset for preset in PRESETS.values() if preset.name in chosen]


def run_preset(name: str, *, scale: str = "quick", data: str | None = None, out: str | os.PathLike[str] | None = None,
               workers: int | None = None, samples: int | None = None, progress: bool = False,
               device: str | None = None, stage: Callable[[str, int, int], None] | None = None) -> PresetResult:
    """Run one preset and write its outputs.

    Parameters
    ----------
    name : str
        A preset name (:data:`PRESETS`).
    scale : {"quick", "paper"}
    data : str, optional
        Data spec for the presets that train on MNIST (paper scale: the full MNIST,
        ``mnist:DIR``; quick default: the project's mnist10k). Synthetic presets ignore it.
    out : path, optional
        The output directory (default ``reproduce/NAME``). A rerun into the same directory
        skips the training runs already finished.
    workers : int, optional
        Training processes at once (default: the cores available).
    samples : int, optional
        Importance samples per example for the NLL (default 100 quick, 1000 paper).
    progress : bool
        Show the sweeps' progress on stderr (when ``stage`` is None).
    stage : callable, optional
        ``stage(name, done, total)`` through the preset's long work: its training runs, its measurements and
        each measurement's diagnostics (:class:`~collapsekit.experiments.reproduction.context.Context`'s
        ``stage``); ``collapsekit._progress.stages`` draws it. Given, the sweeps draw no bar of their own.
    device : {"auto", "cpu", "cuda"}, optional
        Where the runs train and are measured; ``None``/``auto``: CUDA when available, else the CPU.

    Returns
    -------
    PresetResult
        Its rows, verdict, notes and figure; ``table.csv``, ``table.md``, ``result.json`` and
        ``figure.png`` are in ``out``.
    """
    from collapsekit._threads import single_threaded
    from collapsekit.experiments.reproduction.context import Context
    from collapsekit.experiments.reproduction.outputs import write_outputs

    preset = get_preset(name)
    if scale not in SCALES:
        raise ParameterError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be ≥ 1, got {workers}")
    if samples is not None and samples < 1:
        raise ParameterError(f"--samples must be ≥ 1, got {samples}")
    if device not in (None, "auto", "cpu", "cuda"):
        raise ParameterError(f"--device must be auto, cpu or cuda, got {device!r} (to choose a GPU, set "
                             "CUDA_VISIBLE_DEVICES)")
    if device == "cuda":
        from collapsekit._validation import resolve_device

        resolve_device(device, name="--device")              # no GPU here: one line, before anything runs
    out_dir = Path(out) if out is not None else DEFAULT_ROOT / name
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(f"--out {out_dir} is a file, not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    context = Context(preset=preset, scale=scale, out_dir=out_dir, data=data, workers=workers, samples=samples,
                      progress=progress, device=device, stage=stage)
    started = time.perf_counter()
    with single_threaded(scale == "quick"):
        result = preset.load_runner()(context)
    result.seconds = time.perf_counter() - started
    write_outputs(result)
    return result


# -- the combined report -----------------------------------------------------------------------------
def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from collapsekit.experiments.executors import available_cores

    return f"{platform.system()} {platform.release()}, {cpu}, {available_cores()} CPU cores available"


def _versions() -> str:
    from collapsekit import __version__

    parts = [f"collapsekit {__version__}", f"Python {platform.python_version()}"]
    for module in ("torch", "numpy"):
        imported = sys.modules.get(module)
        if imported is not None:
            parts.append(f"{module} {imported.__version__}")
    return ", ".join(parts)


def write_report(results: Sequence[PresetResult], path: str | os.PathLike[str], *, command: str,
                 load: float | None = None) -> Path:
    """Write the Markdown report of several preset runs (figures copied beside it).

    Each figure is copied to ``images/reproduction/NAME.png`` next to the report and linked
    relatively; the header says on what machine, when and by which command it was made.
    ``load`` is the machine's 1-minute load average when the runs started (times are wall-clock:
    other work on the same cores lengthens them).
    """
    from collapsekit.diagnostics.forecast_intervals import LEVEL
    from collapsekit.experiments.reproduction.outputs import Column, markdown_body, markdown_table

    target = Path(path)
    images = target.parent / "images" / "reproduction"
    scales = sorted({r.scale for r in results})
    total = sum(r.seconds for r in results)
    lines = [f"# Reproducing the paper's experiments ({', '.join(scales)} scale)", "",
             "Dang, Tran, Nguyen & Ho, *Beyond Vanilla Variational Autoencoders: Detecting Posterior Collapse in "
             "Conditional and Hierarchical Variational Autoencoders* (ICLR 2024): each of its experiments (E1–E14) "
             "run by `collapsekit reproduce`, measured with collapsekit's diagnostics beside the "
             "closed-form prediction, and the paper's qualitative claim judged from the measured numbers.", "",
             f"- Command: `{command}`",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; total time {total / 60:.1f} min",
             f"- Machine: {_machine()}" + ("" if load is None else
                                           f"; load average {load:.1f} when the runs started (times are wall-clock)"),
             f"- Software: {_versions()}", "",
             "How to read it: β is the true KL weight everywhere (the loss is ‖y−μ‖²/(2η_dec²) + const + β·KL); "
             "where the paper's script trained a β/2 model, the 'paper β' column gives its nominal value. "
             "'Active dims measured' counts the top-level latent dimensions (z₂ for a hierarchy) whose KL, "
             "averaged over the evaluation data, is at least 0.01 nats; 'predicted' is the closed form's count of "
             "non-collapsed dimensions on the same data and hyper-parameters: exact for linear models; for a "
             "nonlinear one a linear-theory estimate, shown with its conformal interval ('13 (9–16)': the "
             f"post-hoc closed form's {100 * LEVEL:.0f} % split-conformal interval for the run's regime, "
             "docs/forecast.md), and "
             "its 'theory' cell quotes how often that estimate was within ±1 of the measured count on the "
             "forecast benchmark's comparable runs (as `collapsekit diagnose` reports do). NLL is the importance-sampled −log-likelihood in nats per "
             "example (the number of samples S is in each section's notes); AU counts Burda et al.'s active "
             "units (Var_x E[z_j] > 0.01)."]
    if "quick" in scales:
        lines += ["", "The quick scale trains few epochs on small data and on part of each grid, so that every "
                  "preset runs in about a minute on a laptop CPU; its verdicts say what these runs show, not what "
                  "the paper's full runs would show. `--scale paper` runs the paper's settings."]
    summary = [{"id": r.paper_id, "preset": f"[{r.name}](#{_anchor(r)})", "verdict": r.verdict.word,
                "seconds": round(r.seconds, 1)} for r in results]
    lines += ["", "## Summary", "", markdown_table(summary, [Column("id", "id"), Column("preset", "preset"),
                                                             Column("verdict", "paper's claim"),
                                                             Column("seconds", "time (s)")])]
    for result in results:
        link = None
        if result.figure is not None and result.figure.is_file():
            image = images / f"{result.name}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(image) as temporary:
                shutil.copyfile(result.figure, temporary)
            link = Path(os.path.relpath(image, target.parent)).as_posix()
        lines += ["", f"## {result.paper_id} · {result.name}: {result.title}", "", markdown_body(result, link), "",
                  f"Outputs: `{result.out_dir.as_posix()}/` (table.csv, table.md, result.json, figure.png, runs/); "
                  f"{result.seconds:.0f} s."]
    with atomic_path(target) as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _anchor(result: PresetResult) -> str:
    """GitHub's anchor of the result's section heading."""
    heading = f"{result.paper_id} · {result.name}: {result.title}".lower()
    kept = "".join(ch for ch in heading if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")
