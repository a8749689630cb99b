"""The forecast benchmark's fixed grid of nonlinear configurations (docs/forecast.md §1).

Each configuration is a run configuration (the ``collapsekit train`` YAML as a dict, without the seed) with
a stable id (a hash of its content: it does not change when configurations are added or reordered), its data
set's group (for leave-one-dataset-out), its split (``tuning`` or ``reporting``, from the id's hash) and the
regime tags the tables break down by.

β is chosen per configuration so that the closed form's threshold rule on centred moments (η_dec: the configured
one, the Bernoulli stand-in, or the learned one's linear fixed point; :func:`_target_beta`) keeps a target number
of the summary level's dimensions (¼, ½ or ¾ of them): the configurations sit across the linear theory's collapse
thresholds. That choice favours no method's *count* being right: the measured count is what the nonlinear model
does (on this grid, mostly all or nothing: docs/forecast.md §4).

``python bench/forecast/grid.py`` writes ``bench/forecast/grid.json`` (the grid as run; regenerate after a change).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GRID_FILE = HERE / "grid.json"

# (group, data key, data section, model kind, arch, how many, raw [0,1] data?)
FAMILIES: list[tuple[str, str, dict[str, Any], str, str, int, bool]] = [
    ("digits", "digits", {"spec": "digits"}, "vae", "mlp", 8, True),
    ("digits", "digits", {"spec": "digits"}, "vae", "conv", 4, True),
    ("digits", "digits", {"spec": "digits"}, "hvae", "mlp", 4, True),
    ("digits", "digits-label", {"spec": "digits", "condition": "label"}, "cvae", "mlp", 4, True),
    ("digits", "digits_std", {"spec": "@digits_std"}, "vae", "mlp", 6, False),
    ("digits", "digits_std", {"spec": "@digits_std"}, "hvae", "mlp", 3, False),
    ("digits", "digits_std-label", {"spec": "@digits_std", "condition": "label"}, "cvae", "mlp", 3, False),
    ("mnist10k", "mnist2k", {"spec": "@mnist2k"}, "vae", "mlp", 8, True),
    ("mnist10k", "mnist2k", {"spec": "@mnist2k"}, "vae", "conv", 4, True),
    ("mnist10k", "mnist2k", {"spec": "@mnist2k"}, "hvae", "mlp", 4, True),
    ("mnist10k", "mnist2k-quadrants", {"spec": "@mnist2k", "split": "quadrants"}, "cvae", "mlp", 4, True),
    ("mnist10k", "mnist10k-digit1", {"spec": "mnist10k", "digit": 1}, "vae", "mlp", 2, True),
    ("mnist10k", "mnist10k-digit3", {"spec": "mnist10k", "digit": 3}, "vae", "mlp", 2, True),
    ("mnist10k", "mnist10k-digit7", {"spec": "mnist10k", "digit": 7}, "vae", "mlp", 2, True),
    ("mnist10k", "mnist2k_std", {"spec": "@mnist2k_std"}, "vae", "mlp", 5, False),
    ("mnist10k", "mnist2k_std", {"spec": "@mnist2k_std"}, "vae", "conv", 2, False),
    ("mnist10k", "mnist2k_std", {"spec": "@mnist2k_std"}, "hvae", "mlp", 3, False),
    ("synthetic", "gaussian6", {"spec": "gaussian:eigs=9:6:4:3:2:1.5:" + ":".join(["0.02"] * 14) + ",n=2000"},
     "vae", "mlp", 6, False),
    ("synthetic", "gaussian6", {"spec": "gaussian:eigs=9:6:4:3:2:1.5:" + ":".join(["0.02"] * 14) + ",n=2000"},
     "hvae", "mlp", 3, False),
    ("synthetic", "manifold4", {"spec": "@manifold"}, "vae", "mlp", 6, False),
    ("synthetic", "manifold4", {"spec": "@manifold"}, "hvae", "mlp", 3, False),
    ("synthetic", "correlated", {"spec": "correlated:rho=1/2,d=16,n=2000"}, "cvae", "mlp", 4, False),
]


def _spec(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if out["spec"].startswith("@"):
        out["spec"] = f"bench/forecast/data/{out['spec'][1:]}.npz"
    return out


def _treatment(rng: random.Random, i: int, kind: str, arch: str, raw: bool, rows: int) -> dict[str, Any]:
    """The i-th configuration of a family: the factors drawn with the family's own seeded generator."""
    likelihoods = ["fixed", "learned", "bernoulli"] if raw else ["fixed", "learned"]
    likelihood = likelihoods[(i + rng.randrange(3)) % len(likelihoods)]
    activation = rng.choice(["relu", "tanh"])
    heads = likelihood != "bernoulli" and rng.random() < 0.3
    schedule = rng.choices(["constant", "linear", "cyclical", "free_bits"], weights=[5, 2, 2, 1])[0]
    clip = rng.random() < 0.25
    short = rng.random() < 0.2
    eta = rng.choice([0.1, 0.3, 1.0]) if likelihood == "fixed" else 1.0
    if kind == "hvae" and likelihood == "fixed":
        eta = rng.choice([0.1, 0.3])          # z₂ collapses only where η_dec < σ₁ = 0.5 (docs/theory.md §2)
    levels = [8, 4] if kind == "hvae" else [8]
    target = [1, 2, 3][i % 3] if kind == "hvae" else [2, 4, 6][i % 3]
    batch = 64 if rows < 1900 else 128
    epochs = (6 if arch == "conv" else 8) if short else (15 if arch == "conv" else 30)
    return {"likelihood": likelihood, "activation": activation, "heads": heads, "schedule": schedule, "clip": clip,
            "budget": "short" if short else "long", "eta_dec": eta, "latent_dims": levels, "target": target,
            "batch_size": batch, "epochs": epochs}


def _config(data: dict[str, Any], kind: str, arch: str, t: dict[str, Any], steps_per_epoch: int) -> dict[str, Any]:
    model = {"kind": kind, "arch": arch, "latent_dims": t["latent_dims"], "hidden": [128], "channels": [16, 8],
             "activation": t["activation"], "likelihood": "bernoulli" if t["likelihood"] == "bernoulli" else "gaussian",
             "eta_dec": t["eta_dec"], "learn_eta_dec": t["likelihood"] == "learned"}
    if t["heads"]:
        model |= {"mean_activation": "tanh", "out_activation": "tanh"}
    total = steps_per_epoch * t["epochs"]
    schedule: dict[str, Any] = {"name": "constant", "settings": {}}
    objective: dict[str, Any] = {"name": "elbo", "beta": 1.0}
    if t["schedule"] == "linear":
        schedule = {"name": "linear", "settings": {"warmup_steps": total // 4, "start": 0.0, "end": 1.0}}
    elif t["schedule"] == "cyclical":
        schedule = {"name": "cyclical", "settings": {"total_steps": total, "n_cycles": 3, "start": 0.0, "end": 1.0}}
    elif t["schedule"] == "free_bits":
        objective["free_bits"] = 0.05
    optim = {"name": "adam", "lr": 1e-3, "grad_clip": 0.01 if t["clip"] else None}
    train = {"epochs": t["epochs"], "batch_size": t["batch_size"], "progress": False, "monitor": False,
             "checkpoint_every": 1000, "keep_checkpoints": 1}
    return {"data": data, "model": model, "objective": objective, "schedule": schedule, "optim": optim,
            "train": train}


_SPECTRA: dict[str, Any] = {}


def _target_beta(values: dict[str, Any], target: int, key: str) -> float | list[float]:
    """β at which the closed form's threshold rule on centred moments keeps ``target`` dimensions of the summary
    level (the geometric middle of that range of β).

    The rule (docs/theory.md §2): a VAE or CVAE mode of variance λ (of x, or of the CVAE's residual) stays active
    iff λ > β η_dec²; a hierarchy's z₂ mode (β = [1, β₂]) iff β₂ < max(σ₁²/η², σ₁ √λ / η²). η_dec is the configured
    one, the Bernoulli stand-in, or, where learned, the linear optimum's fixed point at that β.
    """
    import numpy as np

    from collapsekit.forecast.closed_form import bernoulli_eta, centred_moments
    from collapsekit.training.builders import load_training_data
    from collapsekit.training.config import RunConfig

    config = RunConfig.parse(values)
    kind, m = config.model.kind, config.model
    if key not in _SPECTRA:
        data = load_training_data(config)
        moments = centred_moments(config, data)
        spectrum = moments.cvae_spectrum() if kind == "cvae" else moments.vae_spectrum() ** 2
        target_rows = (data.y if kind == "cvae" else data.x).double().numpy()
        _SPECTRA[key] = (np.asarray(spectrum, float), bernoulli_eta(target_rows))
    lam, stand_in = _SPECTRA[key]
    d = m.latent_dims[0]

    def eta2(beta: float) -> float:
        if m.likelihood == "bernoulli":
            return stand_in ** 2
        if not m.learn_eta_dec:
            return m.eta_dec ** 2
        e2 = float(lam.mean())
        for _ in range(200):
            e2 = max(float((np.minimum(lam[:d], beta * e2).sum() + lam[d:].sum()) / lam.size), 1e-8)
        return e2

    def count(log_beta: float) -> int:
        beta = float(10 ** log_beta)
        if kind == "hvae":
            e2, s1 = eta2(1.0), float(m.sigma1)
            top = lam[: m.latent_dims[1]]
            return int(np.count_nonzero((beta < s1 ** 2 / e2) | (beta < s1 * np.sqrt(top) / e2)))
        return int(np.count_nonzero(lam[:d] > beta * eta2(beta)))

    def boundary(keep: int) -> float:
        """The largest log β at which at least ``keep`` dimensions stay (bisection; count falls as β grows)."""
        lo, hi = -5.0, 5.0
        if count(lo) < keep:
            return lo
        for _ in range(16):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if count(mid) >= keep else (lo, mid)
        return lo

    top, bottom = boundary(target), boundary(target + 1)   # count == target between bottom and top
    log_beta = (top + bottom) / 2 if top > bottom else top
    beta = float(f"{10 ** log_beta:.3g}")
    return [1.0, beta] if kind == "hvae" else beta


def config_id(entry: dict[str, Any]) -> str:
    """A stable id: a hash of the configuration (not of its place in the grid)."""
    text = json.dumps(entry["config"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def split_of(cid: str) -> str:
    """``tuning`` or ``reporting``, half each, from the id's hash (deterministic, independent of the results)."""
    return "tuning" if int(hashlib.sha256(("split:" + cid).encode()).hexdigest(), 16) % 2 == 0 else "reporting"


def build() -> list[dict[str, Any]]:
    """The grid, ordered so that any prefix covers every regime (greedy: least-seen factor levels first)."""
    import collapsekit.data as cd

    sys.path.insert(0, str(ROOT))
    from bench.forecast import datasets

    datasets.ensure()
    entries = []
    for group, key, data, kind, arch, count, raw in FAMILIES:
        rng = random.Random(f"{key}/{kind}/{arch}")
        spec = _spec(data)
        views = {k: v for k, v in spec.items() if k != "spec"}
        rows = cd.apply_views(cd.load(spec["spec"]), **views).n
        for i in range(count):
            t = _treatment(rng, i, kind, arch, raw, rows)
            values = _config(spec, kind, arch, t, math.ceil(rows / t["batch_size"]))
            values["objective"]["beta"] = _target_beta(values, t["target"], key)
            entry = {"group": group, "data": key, "kind": kind, "arch": arch, "raw": raw, "rows": rows,
                     "regime": {k: t[k] for k in ("likelihood", "activation", "heads", "schedule", "clip", "budget",
                                                  "target")},
                     "config": values}
            entry["id"] = config_id(entry)
            entry["split"] = split_of(entry["id"])
            entries.append(entry)
            print(f"{entry['id']} {key} {kind} {arch} β={values['objective']['beta']} target={t['target']}",
                  file=sys.stderr)
    return _order(entries)


def _levels(entry: dict[str, Any]) -> list[str]:
    r = entry["regime"]
    return [f"g:{entry['group']}", f"d:{entry['data']}", f"k:{entry['kind']}", f"a:{entry['arch']}",
            f"l:{r['likelihood']}", f"s:{r['schedule']}", f"act:{r['activation']}", f"b:{r['budget']}",
            f"h:{r['heads']}", f"c:{r['clip']}", f"t:{r['target']}"]


def _order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    left = sorted(entries, key=lambda e: e["id"])
    ordered = []
    while left:
        best = min(left, key=lambda e: (sum(seen.get(level, 0) for level in _levels(e)), e["id"]))
        left.remove(best)
        ordered.append(best)
        for level in _levels(best):
            seen[level] = seen.get(level, 0) + 1
    return ordered


def load_grid() -> list[dict[str, Any]]:
    """The grid as written in ``grid.json``."""
    return json.loads(GRID_FILE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    grid = build()
    GRID_FILE.write_text(json.dumps(grid, indent=1) + "\n", encoding="utf-8")
    print(f"{len(grid)} configurations → {GRID_FILE.relative_to(ROOT)}", file=sys.stderr)
