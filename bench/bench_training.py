"""Benchmark: training throughput (examples/s) of an MLP VAE on MNIST, three trainers side by side.

Model: encoder 784-512-512-(μ, log σ²) 32, decoder 32-512-512-784, ReLU, Gaussian likelihood with
η_dec = 1 fixed, Adam lr 1e-3, batch size 128, the 10,000 digits of the bundled mnist10k.

  collapsekit  ``Trainer(config, run_dir, data=...).fit()``: Lightning Fabric, a seeded permutation
               per epoch, the β-ELBO objective, per-epoch metrics.jsonl line and checkpoint
               (model + optimizer, safetensors, fsync'd) — all of it timed
  hand loop    the same model class (``build_model_from_config``) and optimiser in a plain loop:
               randperm, slices, forward, −log p(x|z) + KL, backward, step; nothing written
  Pythae       ``pythae.trainers.BaseTrainer`` + ``pythae.models.VAE`` (reconstruction "mse", i.e.
               the same Gaussian up to a constant) with Encoder/Decoder classes of the same layers;
               run in a subprocess with the Python of a separate environment (--pythae-python),
               since Pythae pins its own dependencies

Each measurement runs in a fresh process (``--worker``; Pythae's with the --pythae-python
interpreter, whose environment needs only pythae and torch) that trains a fresh model for --epochs
epochs; the timer covers model construction, trainer set-up and training (not imports, not data
loading). Repetitions are interleaved, in an order rotated at each repetition, so that
machine noise hits all three alike; the table gives the median and the best of --repeats, and examples
per CPU-second, which other processes on a shared machine disturb far less than the wall clock.
Every process uses --threads intra-op threads, 1 by default: with 2 threads on a 2-core machine that
other jobs share, the threads of a step wait for each other whenever one is descheduled, and a
measurement can take 5-10x longer than on an idle machine (seen while writing this).
With --write, updates its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

START, END = "<!-- bench:training:start -->", "<!-- bench:training:end -->"
HIDDEN, LATENT, BATCH, LR, SEED = (512, 512), 32, 128, 1e-3, 0
INTERPRETATION = ("The hand loop does the arithmetic and nothing else. Per step the trainer adds Fabric's "
                  "wrappers, the objective's per-dimension KL and per-example sums kept on the device (no host "
                  "sync); per epoch a seeded permutation, a metrics line and a checkpoint. Pythae feeds each "
                  "batch through a DataLoader that indexes and collates the examples one by one. At this model "
                  "size the matrix products dominate a step, so all three stay close.")


# -- the workers: one measurement each, in a fresh process ----------------------------------------------
# The Pythae worker runs in the Pythae environment: no collapsekit there.
def pythae_worker(data_path: str, epochs: int, scratch: str) -> dict:
    import logging

    import numpy as np
    import torch
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from torch import nn

    logging.getLogger("pythae").setLevel(logging.WARNING)   # its INFO lines go to stdout otherwise

    def mlp(sizes: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return layers

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            BaseEncoder.__init__(self)
            self.trunk = nn.Sequential(*mlp([784, *HIDDEN]))
            self.mean, self.log_var = nn.Linear(HIDDEN[-1], LATENT), nn.Linear(HIDDEN[-1], LATENT)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = self.trunk(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.mean(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            BaseDecoder.__init__(self)
            self.net = nn.Sequential(*mlp([LATENT, *HIDDEN[::-1]]), nn.Linear(HIDDEN[0], 784))

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.net(z))

    x = torch.as_tensor(np.load(data_path), dtype=torch.float32)
    dataset = BaseDataset(x, torch.zeros(len(x)))
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(SEED)
    model = VAE(VAEConfig(input_dim=(784,), latent_dim=LATENT, reconstruction_loss="mse"),
                encoder=Encoder(), decoder=Decoder())
    # No eval set (it would add an evaluation pass per epoch); a checkpoint every epoch, as ours writes.
    out_dir = tempfile.mkdtemp(prefix="pythae-", dir=scratch)
    config = BaseTrainerConfig(output_dir=out_dir, num_epochs=epochs, learning_rate=LR,
                               per_device_train_batch_size=BATCH, optimizer_cls="Adam", steps_saving=1,
                               no_cuda=True, seed=SEED)
    trainer = BaseTrainer(model=model, train_dataset=dataset, eval_dataset=None, training_config=config)
    trainer.train()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    import pythae

    version = getattr(pythae, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("pythae")
    return {"seconds": seconds, "cpu": cpu, "examples": epochs * len(x), "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in model.parameters()), "version": version, "torch": torch.__version__}


def run_config(epochs: int) -> RunConfig:  # noqa: F821  (imported inside: not in Pythae's environment)
    from collapsekit.training import RunConfig

    return RunConfig.parse({
        "data": {"spec": "mnist10k"},
        "model": {"kind": "vae", "arch": "mlp", "hidden": list(HIDDEN), "latent_dims": [LATENT], "activation": "relu",
                  "likelihood": "gaussian", "eta_dec": 1.0, "learn_eta_dec": False, "encoder_std": "data"},
        "objective": {"name": "elbo", "beta": 1.0},
        "optim": {"name": "adam", "lr": LR},
        "train": {"epochs": epochs, "batch_size": BATCH, "seed": SEED, "progress": False},
    })


def collapsekit_worker(data_path: str, epochs: int, scratch: str) -> dict:
    import numpy as np
    import torch

    from collapsekit.training import Trainer, TrainingData

    data = TrainingData(x=torch.from_numpy(np.load(data_path)), name="mnist10k")
    run_dir = Path(tempfile.mkdtemp(prefix="collapsekit-", dir=scratch)) / "run"
    config = run_config(epochs)
    import lightning_fabric  # noqa: F401  (an import, not training: fit() would import it first)

    started, cpu_started = time.perf_counter(), time.process_time()
    result = Trainer(config, run_dir, data=data).fit()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": seconds, "cpu": cpu, "examples": sum(r["examples"] for r in result.metrics),
            "parameters": sum(p.numel() for p in result.model.parameters()), "layers": describe(result.model),
            # set-up, checkpoints and metrics lines: what the epochs' own timers do not cover
            "outside_epochs": seconds - sum(r["seconds"] for r in result.metrics),
            "threads": torch.get_num_threads()}


def hand_worker(data_path: str, epochs: int, scratch: str) -> dict:
    import numpy as np
    import torch
    from torch.distributions import kl_divergence

    from collapsekit.training import TrainingData
    from collapsekit.training.trainer import build_model_from_config

    data = TrainingData(x=torch.from_numpy(np.load(data_path)), name="mnist10k")
    x, config = data.x, run_config(epochs)
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(SEED)
    model = build_model_from_config(config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    examples = 0
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), BATCH):
            batch = x[order[start:start + BATCH]]
            out = model(batch)
            level = out.levels[0]
            loss = -out.likelihood.log_prob(out.target).mean() \
                + kl_divergence(level.posterior, level.prior).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            examples += len(batch)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": seconds, "cpu": cpu, "examples": examples, "parameters": sum(p.numel() for p in model.parameters()),
            "threads": torch.get_num_threads()}


def measure(python: str, worker: str, data_path: Path, epochs: int, threads: int, scratch: Path) -> dict:
    """One measurement in a fresh process: the same start-up state for every trainer."""
    command = [python, __file__, "--worker", worker, "--data", str(data_path), "--epochs", str(epochs),
               "--threads", str(threads), "--out", str(scratch)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)   # Pythae's tqdm bars go to the pipe
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the {worker} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


# -- report ---------------------------------------------------------------------------------------------
def machine(threads: int) -> str:
    import torch

    return _common.machine(threads, torch.__version__, per="per trainer")


def describe(model) -> str:
    """The layer sizes of a collapsekit MLP VAE, read from the model itself."""
    from torch import nn

    def chain(module) -> list[int]:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        return [linears[0].in_features] + [m.out_features for m in linears]

    encoder = model.encoder
    trunk = chain(encoder.trunk)
    heads = f"({encoder.head.mean.out_features} μ, {encoder.head.log_var.out_features} log σ²)"
    return (f"encoder {'-'.join(map(str, trunk))}-{heads}, decoder {'-'.join(map(str, chain(model.decoder)))}")


WORKERS = {"collapsekit": collapsekit_worker, "hand": hand_worker, "pythae": pythae_worker}
NAMES = {"collapsekit": "collapsekit Trainer", "hand": "hand-written loop", "pythae": "Pythae BaseTrainer"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per measurement (10,000 examples each)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the median is reported")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads in every trainer (default 1: see the module docstring)")
    parser.add_argument("--pythae-python", help="Python of an environment with pythae (make bench-venv)")
    parser.add_argument("--write", type=Path, help="update this Markdown file's training section")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        # The first optimiser a process builds imports torch._dynamo (about 1.4 s here): an import, to
        # leave out of every timer alike (collapsekit's worker has it already, through lightning_fabric).
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
        result = WORKERS[args.worker](args.data, args.epochs, args.out)
        print("RESULT " + json.dumps(result))
        return

    import datetime as dt

    import numpy as np

    from collapsekit.data import load

    x = np.ascontiguousarray(load("mnist10k").x, dtype=np.float32)

    pythae_python, skipped = args.pythae_python, None
    if pythae_python is None:
        skipped = "not run: no --pythae-python given (`make bench-venv` creates .bench-venv with pythae)"
    elif not Path(pythae_python).exists():
        skipped = f"not run: {pythae_python} does not exist (`make bench-venv` creates it)"
    elif subprocess.run([pythae_python, "-c", "import pythae"], capture_output=True, check=False).returncode != 0:
        skipped = f"not run: {pythae_python} cannot import pythae"
    if skipped:
        pythae_python = None
        print(f"Pythae: {skipped}")

    workers = ["collapsekit", "hand"] + (["pythae"] if pythae_python else [])
    runs: dict[str, list[dict]] = {w: [] for w in workers}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch_name:
        scratch = Path(scratch_name)
        data_path = scratch / "mnist10k.npy"
        np.save(data_path, x)
        for repeat in range(1, args.repeats + 1):
            shift = (repeat - 1) % len(workers)   # rotate the order: no trainer always runs first
            for worker in workers[shift:] + workers[:shift]:
                python = pythae_python if worker == "pythae" else sys.executable
                run = measure(python, worker, data_path, args.epochs, args.threads, scratch)
                runs[worker].append(run)
                print(f"repeat {repeat}: {NAMES[worker]:22s} {run['seconds']:7.2f} s  "
                      f"{run['examples'] / run['seconds']:8.0f} examples/s  {run['examples'] / run['cpu']:8.0f} "
                      f"examples/CPU-s  ({run['threads']} threads)", flush=True)

    rate = {w: statistics.median(r["examples"] / r["seconds"] for r in rs) for w, rs in runs.items()}
    best = {w: max(r["examples"] / r["seconds"] for r in rs) for w, rs in runs.items()}
    per_cpu = {w: statistics.median(r["examples"] / r["cpu"] for r in rs) for w, rs in runs.items()}
    params = {w: rs[0]["parameters"] for w, rs in runs.items()}
    hand, ours = rate["hand"], rate["collapsekit"]
    version = runs["pythae"][0]["version"] if pythae_python else None
    same = len(set(params.values())) == 1
    command = " ".join(["python bench/bench_training.py", *sys.argv[1:]])
    lines = [START, "## Training throughput: MLP VAE on MNIST (issue 3)", "",
             (f"- date: {dt.date.today().isoformat()}; machine: {machine(args.threads)}"
              + (f"; Pythae {version} in its own environment" if version else "")),
             (f"- model: {runs['collapsekit'][0]['layers']}, ReLU, Gaussian likelihood with η_dec = 1 fixed; "
              f"Adam lr {LR:g}, batch {BATCH}; {args.epochs} epochs of the 10,000 mnist10k digits per measurement"),
             (f"- command: `{command}` (`make bench`); {args.repeats} interleaved repetitions (order rotated), "
              "each in a fresh process"),
             ("- timed: model construction, trainer set-up and training; not imports (each process builds a throwaway "
              "optimiser first: the first one imports torch._dynamo, about 1.4 s) nor data loading. collapsekit: "
              "Lightning Fabric set-up, the collapse monitor (on by default), a metrics.jsonl line and a checkpoint "
              "(model + Adam state, fsync'd) every epoch. Pythae: no eval set (so it keeps a deep copy of the best model on the train loss), a "
              "checkpoint every epoch (`steps_saving=1`, as ours), its tqdm bars, the final model save."),
             "",
             ("| trainer | examples/s (median) | examples/s (best) | vs hand loop (median) "
              "| examples per CPU-second (median) | vs hand loop (CPU) | parameters |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for w in workers:
        lines.append(f"| {NAMES[w]} | {rate[w]:,.0f} | {best[w]:,.0f} | {rate[w] / hand:.2f}× | {per_cpu[w]:,.0f} "
                     f"| {per_cpu[w] / per_cpu['hand']:.2f}× | {params[w]:,} |")
    if skipped:
        lines.append(f"| {NAMES['pythae']} | — | — | — | — | — | {skipped} |")
    # run-to-run spread: the median over trainers of (fastest − slowest) / median
    spread = statistics.median((max(v) - min(v)) / statistics.median(v)
                               for v in ([r["examples"] / r["seconds"] for r in rs] for rs in runs.values()))
    slower = 1 - ours / hand
    outside = statistics.median(r["outside_epochs"] for r in runs["collapsekit"])
    epochs_time = statistics.median(r["seconds"] for r in runs["collapsekit"])
    verdict = (f"collapsekit's trainer runs at {ours / hand:.2f}× the hand loop's speed ("
               + (f"{slower:.1%} slower" if slower > 0 else "no slower")
               + f"; target: at most 10 % slower, {'met' if slower <= 0.10 else 'not met'}; per CPU-second "
               f"{per_cpu['collapsekit'] / per_cpu['hand']:.2f}×)")
    if pythae_python:
        ratio = ours / rate["pythae"]
        if abs(ratio - 1) < spread:
            outcome = f"on par: the difference is within the run-to-run spread of {spread:.0%}, so not shown faster"
        else:
            outcome = "met" if ratio > 1 else "not met"
        verdict += f" and at {ratio:.2f}× Pythae's (target: faster; {outcome})"
    lines += ["", verdict + ". " + (f"The {len(workers)} models have the same parameter count. " if same else
                                    f"Parameter counts differ: {params}. ")
              + f"Of the trainer's time, {outside:.2f} s per run ({outside / epochs_time:.1%}) is spent outside "
              f"the epochs' loops: Fabric set-up, {args.epochs} checkpoints and metrics lines. " + INTERPRETATION, END]
    section = "\n".join(lines)
    print(section)
    if args.write:
        _common.write_section(args.write, START, END, section)


if __name__ == "__main__":
    main()
