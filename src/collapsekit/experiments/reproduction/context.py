"""The context of one preset run: its scale, data, output directory, budgets and notes.

Also what every preset's configuration shares (:func:`run_config`, :func:`train_section`) and the notes
on the paper's β scaling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapsekit.errors import CollapsekitError, ParameterError

if TYPE_CHECKING:
    from collapsekit.experiments.reproduction.preset import Preset
    from collapsekit.training import RunConfig, TrainingData


#: Importance samples per example for the NLL: few at quick scale (a rough estimate), the
#: diagnostics' default at paper scale.
QUICK_SAMPLES, PAPER_SAMPLES = 100, 1000
#: Examples the quick scale evaluates (the NLL costs S decoder passes per example).
QUICK_EVAL_EXAMPLES = 500
#: The quick scale's MNIST: the 10,000 digits bundled with collapsekit.
QUICK_MNIST = "mnist10k"

HALVED_NOTE = ("β scaling: the paper's script trains ‖y−μ‖²/η_dec² + β·KL, i.e. true β = nominal/2; we use "
               "the true β (‖y−μ‖²/(2η_dec²) + const + β·KL) and train each setting at nominal/2, the model the "
               "paper actually trained: the paper's nominal β=2 is our β=1. The 'paper β' column keeps the "
               "nominal value.")
TRUE_BETA_NOTE = ("β scaling: the paper's linear script already uses the consistent scaling (its β is the true "
                  "β), so the paper's values are used as they are.")



@dataclass
class Context:
    """Everything a preset's runner needs to know about this run.

    Attributes
    ----------
    preset : Preset
        The preset being run.
    scale : {"quick", "paper"}
    out_dir : Path
        Its output directory (training runs go under ``out_dir/runs``).
    data : str or None
        The user's ``--data`` spec (MNIST presets), or None for the scale's default.
    workers : int or None
        Training processes at once (``run_sweep``'s ``workers``).
    samples : int or None
        Importance samples per example for the NLL (None: 100 quick, 1000 paper).
    progress : bool
        Show the sweeps' plan and progress bars on stderr (when ``stage`` is None).
    stage : callable, optional
        ``stage(name, done, total)`` (:data:`collapsekit._progress.Stage`): the preset's progress through its
        training runs (``"training runs"``), its measurements (``"measuring runs"``) and each measurement's
        diagnostics (``"measuring: STAGE"``). Given, the sweeps draw no bar of their own.
    device : str or None
        Where the runs train and are measured: ``cpu``, ``cuda``, or ``auto``/None (CUDA when available).
    notes : list of str
        Lines every output repeats (what was run, and how it differs from the paper).
    """

    preset: Preset
    scale: str
    out_dir: Path
    data: str | None = None
    workers: int | None = None
    samples: int | None = None
    progress: bool = False
    device: str | None = None
    notes: list[str] = field(default_factory=list)
    stage: Callable[[str, int, int], None] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Training runs asked for so far, those finished (or found finished), and those measured.
    _runs: dict[str, int] = field(default_factory=lambda: {"planned": 0, "trained": 0, "measured": 0}, repr=False)

    @property
    def quick(self) -> bool:
        """True at quick scale."""
        return self.scale == "quick"

    @property
    def importance_samples(self) -> int:
        """S of the importance-sampled NLL."""
        return self.samples if self.samples is not None else (QUICK_SAMPLES if self.quick else PAPER_SAMPLES)

    @property
    def accelerator(self) -> str:
        """Fabric's accelerator for ``device``: ``cuda`` (sweeps give each worker its own GPU) or ``cpu``."""
        from collapsekit._validation import resolve_device

        return "cuda" if resolve_device(self.device).type == "cuda" else "cpu"

    def note(self, text: str) -> None:
        """Add a line to the notes of every output (once)."""
        if text not in self.notes:
            self.notes.append(text)

    # -- progress -------------------------------------------------------------------------------
    def _show(self, name: str, done: int, total: int) -> None:
        if self.stage is not None:
            self.stage(name, done, total)

    def runs_planned(self, n: int) -> None:
        """``n`` more training runs are about to train (a preset learns its runs grid by grid)."""
        self._runs["planned"] += n
        self._show("training runs", self._runs["trained"], self._runs["planned"])

    def runs_trained(self, n: int = 1) -> None:
        """``n`` training runs finished (or were found finished)."""
        self._runs["trained"] += n
        self._show("training runs", self._runs["trained"], self._runs["planned"])

    def run_measured(self) -> None:
        """One trained run measured."""
        self._runs["measured"] += 1
        self._show("measuring runs", self._runs["measured"], max(self._runs["trained"], self._runs["measured"]))

    def measuring(self, name: str, done: int, total: int) -> None:
        """A measurement's diagnostics stage (``diagnose_model``'s ``progress``)."""
        self._show(f"measuring: {name}", done, total)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per key for this run (data, spectra)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- data ---------------------------------------------------------------------------------
    def mnist(self) -> str:
        """The MNIST spec: ``--data``; else at quick scale the bundled mnist10k; the paper scale needs
        the full MNIST and says how to get it."""
        if self.data:
            return self.data
        if not self.quick:
            raise ParameterError(f"reproduce {self.preset.name} --scale paper trains on the full MNIST: pass "
                                 "--data mnist:DIR (collapsekit.data.download_mnist(DIR) fetches it)")
        return QUICK_MNIST

    def count(self, spec: str) -> int:
        """Number of examples a spec holds (loaded once)."""
        from collapsekit.data import load

        return int(self.cached(f"count:{spec}", lambda: load(spec).n))

    def subset(self, spec: str, n: int) -> dict[str, Any]:
        """Data-section keys that keep a seeded subset of about ``n`` examples (all when fewer)."""
        total = self.count(spec)
        if total <= n:
            return {}
        return {"part": "train", "test_fraction": round(1.0 - n / total, 6)}

    def training_data(self, config: RunConfig) -> TrainingData:
        """The data a configuration trains on (loaded once per data setting)."""
        from collapsekit.training import load_training_data

        key = json.dumps(["train", config.data.model_dump(mode="json"), config.train.seed, config.model.kind])
        return self.cached(key, lambda: load_training_data(config))

    def eval_data(self, config: RunConfig, max_examples: int | None = None) -> tuple[TrainingData, str]:
        """The data the diagnostics run on, and a phrase saying which.

        Quick scale: the first ``max_examples`` (default 500) training examples. Paper scale: the
        MNIST test set when the spec is ``mnist:DIR`` and DIR holds it, else the training data.
        """
        from collapsekit.training import TrainingData, load_training_data

        limit = max_examples if max_examples is not None else (QUICK_EVAL_EXAMPLES if self.quick else None)
        test_spec = None if self.quick else _test_spec(config.data.spec)

        def make() -> tuple[TrainingData, str]:
            if test_spec is not None:
                data = load_training_data(config.with_overrides({"data.spec": test_spec, "data.part": None}))
                where = "test"
            else:
                data, where = self.training_data(config), "training"
            if limit is not None and data.n > limit:
                data = TrainingData(x=data.x[:limit], y=None if data.y is None else data.y[:limit],
                                    image_side=data.image_side, name=data.name)
                return data, f"the first {limit:,} {where} examples"
            return data, f"the {where} data ({data.n:,} examples)"

        key = json.dumps(["eval", config.data.model_dump(mode="json"), config.train.seed, config.model.kind, limit,
                          test_spec])
        return self.cached(key, make)


def _test_spec(spec: str) -> str | None:
    """``mnist:DIR`` → ``mnist:DIR:t10k`` when DIR holds the test set; None otherwise."""
    if not spec.startswith("mnist:") or spec.rsplit(":", 1)[-1] in ("train", "t10k", "test"):
        return None
    from collapsekit.data import load

    candidate = f"{spec}:t10k"
    try:
        load(candidate)
    except CollapsekitError:
        return None
    return candidate


def run_config(values: Mapping[str, Any]) -> RunConfig:
    """A validated :class:`RunConfig` from nested sections (a one-line ParameterError otherwise)."""
    from collapsekit.training import RunConfig

    return RunConfig.parse(dict(values))


def train_section(ctx: Context, *, epochs: int, seed: int, batch_size: int = 128) -> dict[str, Any]:
    """The ``train`` section every preset uses: no progress bars, no collapse monitor (each run is
    diagnosed once at the end instead), the scale's accelerator."""
    return {"epochs": epochs, "batch_size": batch_size, "seed": seed, "accelerator": ctx.accelerator,
            "progress": False, "monitor": False}

