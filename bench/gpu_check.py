"""The GPU check of issue 14, in one script: train, kill and resume, diagnose, a two-point sweep, batched modes.

Run it where a GPU is (under 8 minutes on one H100 with the defaults; it needs no network)::

    python bench/gpu_check.py --write docs/benchmarks.md

Every step runs on the GPU and again on the CPU, through the command line a user types (a fresh process
each), and the table gives both times and their ratio. ``--cpu`` runs the CPU column only (no GPU
needed): that is how this script is checked on a machine without one. The steps:

1. ``train``: an MLP VAE 784-512-512-32 on the bundled mnist10k, ``--epochs`` epochs (the time is the
   sum of the epochs' ``seconds``, the step loops), and one epoch with ``--precision bf16-mixed``.
2. ``kill+resume``: the same run started in a process that is killed (SIGKILL) as soon as its first
   checkpoint is on disk, then ``train --resume``; its metrics and final weights must equal an
   uninterrupted run's bit for bit (deterministic algorithms and CUBLAS_WORKSPACE_CONFIG on CUDA).
3. ``diagnose``: ``collapsekit diagnose RUN --device D --samples 100`` of the GPU's run on each device; the
   headline count must agree between the devices and the KL per dimension within 1e-3 relative.
4. ``sweep``: two points (β = 0.5, 2) of a linear VAE, one process per point, ``--gpus-per-point 0.5``
   (both points on GPU 0, or one per GPU where there are two), then the same grid batched in
   ``--batch-mode fast``.
5. ``batched``: 16 MLP VAEs on the 8×8 digits as one program, ``exact`` against ``fast`` (in-process).

Checks that fail are listed at the end and make the exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np

HERE = Path(__file__).resolve().parent
START, END = "<!-- bench:gpu-check:start -->", "<!-- bench:gpu-check:end -->"
TRAIN = ["--data", "mnist10k", "--model", "vae", "--arch", "mlp", "--hidden", "512,512", "--latent-dims", "32",
         "--batch-size", "128", "--lr", "1e-3", "--no-progress"]


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m collapsekit ARGS`` in a fresh process (this checkout's src/ first on the path)."""
    run = subprocess.run([sys.executable, "-m", "collapsekit", *args], capture_output=True, text=True,
                         env=env or environment())
    if check and run.returncode != 0:
        raise RuntimeError(f"collapsekit {' '.join(args)} exited {run.returncode}:\n{run.stderr[-3000:]}")
    return run


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def records(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def final_weights(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    checkpoints = sorted((run_dir / "checkpoints").glob("epoch-*"))
    return load_file(checkpoints[-1] / "model.safetensors")


class Check:
    """The table's rows and the failed checks."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, float]]] = []
        self.failed: list[str] = []
        self.notes: list[str] = []

    def time(self, step: str, device: str, seconds: float) -> None:
        for name, times in self.rows:
            if name == step:
                times[device] = seconds
                return
        self.rows.append((step, {device: seconds}))
        print(f"  {step:40s} {device:5s} {seconds:8.2f} s", flush=True)

    def expect(self, ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failed.append(what)


def train_step(check: Check, device: str, root: Path, epochs: int) -> Path:
    run = root / f"train-{device}"
    started = time.perf_counter()
    cli("train", *TRAIN, "--epochs", str(epochs), "--accelerator", device, "--out", str(run))
    wall = time.perf_counter() - started
    loop = sum(r["seconds"] for r in records(run))
    check.time(f"train: {epochs} epochs, step loops", device, loop)
    check.time(f"train: {epochs} epochs, whole command", device, wall)
    bf16 = root / f"bf16-{device}"
    started = time.perf_counter()
    cli("train", *TRAIN, "--epochs", "1", "--accelerator", device, "--precision", "bf16-mixed", "--out", str(bf16))
    check.time("train: 1 epoch bf16-mixed, whole command", device, time.perf_counter() - started)
    last = records(bf16)[-1]
    check.expect(all(np.isfinite([last["loss"], last["kl"]])) and len(last["n_active"]) == 1,
                 f"{device}: bf16-mixed epoch has finite loss {last['loss']:.4g} and a monitor record")
    return run


def kill_and_resume(check: Check, device: str, root: Path, epochs: int, reference: Path) -> None:
    run = root / f"killed-{device}"
    args = ["train", *TRAIN, "--epochs", str(epochs), "--accelerator", device, "--out", str(run)]
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "collapsekit", *args], env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = run / "checkpoints" / "epoch-000001"
    while process.poll() is None and not (first / "model.safetensors").exists():
        time.sleep(0.02)
    killed = process.poll() is None
    if killed:
        time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = len(records(run)) if (run / "metrics.jsonl").exists() else 0
    cli(*args, "--resume")
    check.time(f"kill after epoch 1 + resume to {epochs}", device, time.perf_counter() - started)
    if not killed:
        check.notes.append(f"{device}: the run finished before it could be killed; resume had nothing to do")
    check.expect(without_time(records(run)) == without_time(records(reference)),
                 f"{device}: killed (after {kept} epoch record(s)) and resumed run has the uninterrupted run's "
                 "metrics, bit for bit")
    mine, theirs = final_weights(run), final_weights(reference)
    check.expect(all((mine[k] == v).all().item() for k, v in theirs.items()),
                 f"{device}: and its final weights, bit for bit")


def diagnose_step(check: Check, device: str, run: Path, root: Path, samples: int) -> dict[str, Any]:
    out = root / f"diagnosis-{device}"
    started = time.perf_counter()
    done = cli("diagnose", str(run), "--device", device, "--samples", str(samples), "--json", "--out", str(out))
    check.time(f"diagnose --samples {samples} (10,000 examples)", device, time.perf_counter() - started)
    return json.loads(done.stdout)


def sweep_step(check: Check, device: str, root: Path) -> list[dict[str, str]]:
    config = root / "sweep.yaml"
    config.write_text("data: {spec: mnist10k}\nmodel: {kind: vae, arch: linear, latent_dims: [16]}\n"
                      "train: {epochs: 2, batch_size: 128, accelerator: %s}\n" % device)
    gpus = "0.5" if device == "cuda" else "0"
    rows = []
    for label, extra in (("2 points, a process each", ["--no-batch", "--gpus-per-point", gpus]),
                         ("2 points batched --batch-mode fast", ["--batch-mode", "fast", "--gpus-per-point",
                                                                 "1" if device == "cuda" else "0"])):
        out = root / f"sweep-{device}-{len(rows)}"
        started = time.perf_counter()
        cli("sweep", str(config), "--grid", "beta=0.5,2", "--out", str(out), "--no-progress", *extra)
        check.time(f"sweep: {label}", device, time.perf_counter() - started)
        import csv

        with open(out / "summary.csv", newline="") as stream:
            summary = list(csv.DictReader(stream))
        check.expect(len(summary) == 2 and all(row["status"] == "done" for row in summary),
                     f"{device}: sweep ({label}) finished both points")
        rows.append({row["point"]: row["n_active_measured"] for row in summary})
    check.expect(rows[0] == rows[1], f"{device}: the batched sweep counts the active dimensions the separate one does")
    return rows


def batched_step(check: Check, device: str, root: Path) -> None:
    import warnings

    from collapsekit.training import RunConfig
    from collapsekit.training.batched import train_batched
    from collapsekit.training.monitor import CollapseWarning

    warnings.simplefilter("ignore", CollapseWarning)                   # β up to 8 collapses, as it should

    base = RunConfig.parse({"data": {"spec": "digits"},
                            "model": {"kind": "vae", "arch": "mlp", "latent_dims": [16], "hidden": [64]},
                            "train": {"epochs": 2, "batch_size": 128, "progress": False, "accelerator": device}})
    configs = [base.with_overrides({"objective.beta": float(b), "train.seed": s})
               for s, b in enumerate(np.geomspace(0.1, 8, 16))]
    results = {}
    for mode in ("exact", "fast", "exact", "fast"):                   # the first pair warms up
        results[mode] = train_batched(configs, [root / f"batched-{device}-{mode}-{k}-{time.time_ns()}"
                                                for k in range(16)], mode=mode)
    for mode in ("exact", "fast"):
        check.time(f"batched 16 MLPs, digits, 2 epochs: {mode}, step loops", device,
                   sum(r["seconds"] for r in results[mode][0].metrics))
    worst = max(float((a.model.state_dict()[n].cpu() - b.model.state_dict()[n].cpu()).abs().max())
                for a, b in zip(results["fast"], results["exact"]) for n in a.model.state_dict())
    check.expect(worst < 1e-3, f"{device}: fast batched weights within 1e-3 of exact (max |Δ| {worst:.2e})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the CPU column only (no GPU needed)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of steps 1-2 (default 4)")
    parser.add_argument("--samples", type=int, default=100, help="diagnose's importance samples (default 100)")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--write", type=Path, help="update this Markdown file's gpu-check section")
    args = parser.parse_args()
    import torch

    devices = ["cpu"] if args.cpu else ["cuda", "cpu"]
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device here: run with --cpu, or where a GPU is", file=sys.stderr)
        return 2
    card = "none (--cpu)" if args.cpu else f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"
    print(f"gpu_check: {card}; torch {torch.__version__}; {os.cpu_count()} CPU cores", flush=True)
    check = Check()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        root = args.out or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        runs = {}
        for device in devices:
            print(f"[{device}] train, kill and resume", flush=True)
            runs[device] = train_step(check, device, root, args.epochs)
            kill_and_resume(check, device, root, args.epochs, runs[device])
        # One run's weights (the first device's) diagnosed on every device: the same numbers expected.
        reports = {device: diagnose_step(check, device, runs[devices[0]], root, args.samples) for device in devices}
        if len(devices) == 2:
            levels = [reports[d]["levels"][-1] for d in devices]
            kl = [np.asarray(level["kl_per_dim"]) for level in levels]
            check.expect(reports["cuda"]["n_active"] == reports["cpu"]["n_active"]
                         and np.allclose(kl[0], kl[1], rtol=1e-3, atol=1e-5),
                         "diagnose: one run on both devices, the same headline count and KL per dimension "
                         f"(max |Δ| {float(np.abs(kl[0] - kl[1]).max()):.1e} nats)")
            check.expect(abs(reports["cuda"]["log_likelihood"] - reports["cpu"]["log_likelihood"]) < 0.5,
                         "diagnose: importance-sampled log-likelihood within 0.5 nats on both devices (different "
                         "random draws)")
        for device in devices:
            print(f"[{device}] sweep and batched modes", flush=True)
            sweep_step(check, device, root)
            batched_step(check, device, root)
    total = time.perf_counter() - began
    lines = [START, "## GPU check (issue 14): train, kill and resume, diagnose, sweep, batched modes", "",
             f"- date: {dt.date.today().isoformat()}; GPU: {card}; "
             f"CPU: {_common.machine(torch.get_num_threads(), torch.__version__)}",
             f"- command: `python bench/gpu_check.py{' --cpu' if args.cpu else ''} --epochs {args.epochs} "
             f"--samples {args.samples} --write docs/benchmarks.md`; one run of each step, a fresh process per "
             f"command (its start-up included: torch's import, CUDA's initialisation), {total:.0f} s in all", "",
             "| step | " + " | ".join(f"{d} (s)" for d in devices) + (" | CPU / GPU |" if len(devices) == 2 else " |"),
             "|---|" + "---:|" * len(devices) + ("---:|" if len(devices) == 2 else "")]
    for step, times in check.rows:
        cells = [f"{times[d]:.2f}" if d in times else "" for d in devices]
        ratio = (f" | {times['cpu'] / times['cuda']:.1f}×" if len(devices) == 2 and "cpu" in times and "cuda" in times
                 else "")
        lines.append(f"| {step} | " + " | ".join(cells) + ratio + (" |" if ratio or len(devices) == 1 else " | |"))
    lines += ["", "Checks: " + ("all passed." if not check.failed else "FAILED: " + "; ".join(check.failed))]
    lines += [f"Note: {note}." for note in check.notes]
    lines.append(END)
    section = "\n".join(lines)
    print(section)
    if args.write:
        _common.write_section(args.write, START, END, section)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
