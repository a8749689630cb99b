"""Benchmark: the cost of checkpoint checksums against one training epoch of an MLP VAE 784-512-512-32 on mnist10k.

Each checkpoint carries the SHA-256 of its three files (model.safetensors, optimizer.safetensors,
state.json), computed from their bytes when they are written and again when they are loaded. This
script trains the MLP VAE of bench_training.py (encoder 784-512-512-(32 μ, 32 log σ²), decoder
32-512-512-784, Adam, batch 128) with the collapsekit Trainer (collapse monitor on, as by default)
for --epochs epochs, and at the end of every epoch (a trainer callback, right after that epoch's
checkpoint is written) times the SHA-256 of that checkpoint's files, --repeats times, on their bytes
in memory (hashlib). Each epoch is thus set beside a checksum timed next to it, so that the load of a
shared machine hits both alike; the ratio is the median over the epochs after the first (which also
builds the optimiser state). Two clocks:
  wall  epoch: the trainer's own per-epoch timer (``seconds`` of its metrics record: the step loop
        and the epoch's record, not the checkpoint); checksum: the median of the repeats
  CPU   process CPU time (time.process_time), which other processes disturb far less: epoch: from
        one epoch's callback to the next (so it includes that epoch's checkpoint write, a few per
        cent: the ratio is slightly understated); checksum: the median of the repeats
Target: under 1 % of an epoch. Writing and reading (with verification) a whole checkpoint are timed
once after training, for context. Torch runs on --threads intra-op threads (1 by default, as
bench_training.py; hashlib uses one core). With --write, updates its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import machine, write_section

from collapsekit.data import load
from collapsekit.training import RunConfig, Trainer, TrainingData
from collapsekit.training.checkpoint import CHECKSUMMED, latest_checkpoint, load_checkpoint, save_checkpoint, sha256

START, END = "<!-- bench:checkpoint:start -->", "<!-- bench:checkpoint:end -->"
HIDDEN, LATENT, BATCH, LR, SEED = (512, 512), 32, 128, 1e-3, 0


def run_config(spec: str, epochs: int) -> RunConfig:
    return RunConfig.parse({
        "data": {"spec": spec},
        "model": {"kind": "vae", "arch": "mlp", "hidden": list(HIDDEN), "latent_dims": [LATENT], "activation": "relu",
                  "likelihood": "gaussian", "eta_dec": 1.0, "learn_eta_dec": False, "encoder_std": "data"},
        "objective": {"name": "elbo", "beta": 1.0},
        "optim": {"name": "adam", "lr": LR},
        "train": {"epochs": epochs, "batch_size": BATCH, "seed": SEED, "progress": False},
    })


def timed(fn: Any, repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return wall, cpu


class ChecksumBesideEachEpoch:
    """A trainer callback: at each epoch's end, hash that epoch's checkpoint ``repeats`` times."""

    def __init__(self, checkpoints: Path, repeats: int) -> None:
        self.checkpoints, self.repeats = checkpoints, repeats
        self.rows: list[dict[str, Any]] = []
        self._cpu_mark = time.process_time()

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        cpu_epoch = time.process_time() - self._cpu_mark
        newest = latest_checkpoint(self.checkpoints)
        files = [(newest / name).read_bytes() for name in CHECKSUMMED]
        sha256(files[0])                                   # warm-up
        wall, cpu = timed(lambda: [sha256(content) for content in files], self.repeats)
        self.rows.append({"epoch": epoch, "wall_epoch": metrics["seconds"], "cpu_epoch": cpu_epoch,
                          "wall_hash": statistics.median(wall), "cpu_hash": statistics.median(cpu),
                          "bytes": {name: len(content) for name, content in zip(CHECKSUMMED, files)}})
        self._cpu_mark = time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist10k", help="data spec (default mnist10k, the built-in digits)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (the first is not counted)")
    parser.add_argument("--repeats", type=int, default=20, help="checksum timings per epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--write", type=Path, help="update this Markdown file's checkpoint section")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be ≥ 2 (the first epoch is not counted)")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    dataset = load(args.data)
    data = TrainingData(x=torch.as_tensor(dataset.x, dtype=torch.float32), name=dataset.name)
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as scratch:
        root = Path(scratch)
        beside = ChecksumBesideEachEpoch(root / "run" / "checkpoints", args.repeats)
        result = Trainer(run_config(args.data, args.epochs), root / "run", data=data, callbacks=[beside]).fit()
        newest = latest_checkpoint(root / "run" / "checkpoints")
        checkpoint = load_checkpoint(newest)
        state = {k: v for k, v in checkpoint.state.items() if k != "epoch"}
        saving, _ = timed(lambda: save_checkpoint(root / "copies", epoch=checkpoint.epoch, model=checkpoint.model,
                                                  optimizer=checkpoint.optimizer, state=state, keep=1), 5)
        loading, _ = timed(lambda: load_checkpoint(newest), 5)
    load_after = os.getloadavg()[0]

    counted = beside.rows[1:]
    for row in beside.rows:
        print(f"epoch {row['epoch']}: wall {row['wall_epoch']:.3f} s, CPU {row['cpu_epoch']:.3f} s; checksum wall "
              f"{1e3 * row['wall_hash']:.2f} ms, CPU {1e3 * row['cpu_hash']:.2f} ms; ratio wall "
              f"{100 * row['wall_hash'] / row['wall_epoch']:.3f}%, CPU {100 * row['cpu_hash'] / row['cpu_epoch']:.3f}%"
              + ("" if row in counted else " (not counted)"), flush=True)
    median = lambda key: statistics.median(row[key] for row in counted)  # noqa: E731
    wall_ratio = statistics.median(row["wall_hash"] / row["wall_epoch"] for row in counted)
    cpu_ratio = statistics.median(row["cpu_hash"] / row["cpu_epoch"] for row in counted)
    sizes = counted[-1]["bytes"]
    total = sum(sizes.values())
    save, verify = statistics.median(saving), statistics.median(loading)
    parameters = sum(v.numel() for v in result.model.parameters())
    steps = -(-data.n // BATCH)

    command = (f"python bench/bench_checkpoint.py --epochs {args.epochs} --repeats {args.repeats} "
               f"--threads {args.threads}")
    data_note = ""
    if args.data != "mnist10k":
        kind, _, where = args.data.partition(":")
        shown = f"{kind}:DIR" if where and ("/" in where or Path(where).exists()) else args.data
        command += f" --data {shown}"
        data_note = f" (DIR: a local copy of the data, {Path(where).name})" if shown != args.data else ""
    mib = lambda n: f"{n / 2**20:.2f} MiB"  # noqa: E731
    verdict = "met" if max(wall_ratio, cpu_ratio) < 0.01 else ("met on CPU time" if cpu_ratio < 0.01 else "not met")
    lines = [START, "## Checkpoint checksums against a training epoch (issue 10)", "",
             (f"- date: {dt.date.today().isoformat()}; machine: {machine(args.threads, torch.__version__)}; load "
              f"average {load_before:.1f} before, {load_after:.1f} after (other jobs shared the cores)"),
             (f"- model: MLP VAE 784-512-512-32 ({parameters:,} parameters; Gaussian likelihood, data-dependent "
              f"encoder std), β-ELBO, Adam lr {LR:g}, batch {BATCH}, {data.n:,} × {data.x.shape[1]} examples "
              f"({steps} steps per epoch), the collapse monitor on"),
             (f"- checkpoint hashed: {mib(sizes['model.safetensors'])} model.safetensors + "
              f"{mib(sizes['optimizer.safetensors'])} optimizer.safetensors (Adam's two moments) + "
              f"{sizes['state.json'] / 1024:.1f} KiB state.json = {mib(total)}"),
             (f"- command: `{command} --write docs/benchmarks.md`{data_note}; after each epoch the SHA-256 (hashlib) "
              f"of that epoch's checkpoint is timed {args.repeats} times, in memory; medians over epochs 2 to "
              f"{args.epochs}; CPU = process CPU time (an epoch's includes its checkpoint write)"), "",
             "| what | wall time (ms) | CPU time (ms) |",
             "|---|---:|---:|",
             f"| one training epoch | {1e3 * median('wall_epoch'):,.0f} | {1e3 * median('cpu_epoch'):,.0f} |",
             (f"| SHA-256 of one checkpoint (written with it, and again to verify it on load) "
              f"| {1e3 * median('wall_hash'):.2f} | {1e3 * median('cpu_hash'):.2f} |"),
             f"| **checksum ÷ epoch** (median of the per-epoch ratios) | **{100 * wall_ratio:.2f}%** "
             f"| **{100 * cpu_ratio:.2f}%** |",
             f"| for context: the whole checkpoint written (`save_checkpoint`: serialise, hash, write) | {1e3 * save:.1f} "
             "| — |",
             f"| for context: the whole checkpoint read and verified (`load_checkpoint`) | {1e3 * verify:.1f} | — |",
             "",
             (f"The checksum of one checkpoint costs {100 * wall_ratio:.2f}% of an epoch in wall time and "
              f"{100 * cpu_ratio:.2f}% in CPU time (target: under 1 %, {verdict}); hashlib's SHA-256 runs at "
              f"{total / median('cpu_hash') / 2**20:.0f} MiB per CPU-second here. It is paid once per checkpoint "
              "written (every epoch by default, every N with `--checkpoint-every N`) and once per checkpoint "
              "loaded (resume, diagnose). The rest of a checkpoint's cost (serialising the tensors, the file "
              "system) was there before the checksums."),
             END]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, START, END, section)


if __name__ == "__main__":
    main()
