"""Benchmark: the overhead of CollapseMonitor on the training step of an MLP VAE 784-512-512-32 (mnist10k).

Variants, run side by side in one process on the same model, interleaved in chunks of --chunk steps
(round-robin, --rounds rounds), so that machine load drifts hit every variant alike:
  no monitor                     the training step alone (forward, β-ELBO, backward, Adam)
  update(mu, log_var)            plain-loop API; (mu, log_var) captured from the encoder by a forward hook
  update_output(output, terms)   the trainer's path: the objective's per-dimension KL is reused
  update_output(output)          the KL recomputed by the monitor (objectives' rule)
Times are medians over chunks of the per-step wall time. ``end_epoch`` (one host sync per level, the
minibatch MI estimate on 128 examples, the hysteresis step) is timed on its own and amortised over an
epoch of mnist10k at batch 128 (79 steps). Writes its section of docs/benchmarks.md with --write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import machine, write_section

from collapsekit.data import load
from collapsekit.models import build_model
from collapsekit.objectives import build_objective
from collapsekit.training.monitor import CollapseMonitor

START, END = "<!-- bench:monitor:start -->", "<!-- bench:monitor:end -->"
BATCH = 128


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--chunk", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--write", type=Path, help="update this Markdown file's monitor section")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = torch.as_tensor(load("mnist10k").x, device=device)
    steps_per_epoch = -(-x.shape[0] // BATCH)
    torch.manual_seed(0)
    model = build_model("vae", "mlp", x_dim=784, latent_dims=[32], hidden=[512, 512], encoder_std="data").to(device)
    objective = build_objective("elbo", beta=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    captured: dict[str, Any] = {}
    model.encoder.register_forward_hook(lambda module, inputs, output: captured.__setitem__("enc", output))

    def step(feed: Callable[[Any, Any], None] | None) -> float:
        """One training step; returns the seconds spent in the monitor's call."""
        batch = x[torch.randint(0, x.shape[0], (BATCH,), device=device)]
        output = model(batch)
        terms = objective(output)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        if feed is None:
            return 0.0
        sync(device)
        started = time.perf_counter()
        feed(output, terms)
        sync(device)
        return time.perf_counter() - started

    monitors = {name: CollapseMonitor(warn=False) for name in ("update", "terms", "output")}
    variants: dict[str, Callable[[Any, Any], None] | None] = {
        "no monitor": None,
        "update(mu, log_var)": lambda output, terms: monitors["update"].update(*captured["enc"]),
        "update_output(output, terms.kl_per_dim)": lambda output, terms: monitors["terms"].update_output(
            output, terms.kl_per_dim),
        "update_output(output)": lambda output, terms: monitors["output"].update_output(output),
    }
    for feed in variants.values():           # warm-up: allocator, kernels, first-call overhead
        for _ in range(3):
            step(feed)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    calls: dict[str, list[float]] = {name: [] for name in variants}
    end_epoch: list[float] = []
    for _ in range(args.rounds):
        for name, feed in variants.items():
            sync(device)
            started = time.perf_counter()
            for _ in range(args.chunk):
                calls[name].append(step(feed))
            sync(device)
            samples[name].append((time.perf_counter() - started) / args.chunk)
        for monitor in monitors.values():     # close the "epoch" of each monitor, timed on its own
            sync(device)
            started = time.perf_counter()
            monitor.end_epoch()
            sync(device)
            end_epoch.append(time.perf_counter() - started)
    base = statistics.median(samples["no monitor"])
    closing = statistics.median(end_epoch)
    rows = []
    for name, values in samples.items():
        per_step = statistics.median(values)
        difference = per_step / base - 1.0                  # end to end: noisy on a shared machine
        call = statistics.median(calls[name])               # the monitor's own call, timed directly
        share = call / base + (0.0 if name == "no monitor" else closing / (steps_per_epoch * base))
        rows.append((name, per_step, difference, call, share))
        print(f"{name:42s} {1e3 * per_step:8.3f} ms/step  end-to-end {100 * difference:+6.2f}%  "
              f"call {1e6 * call:7.1f} µs  share of an epoch with end_epoch {100 * share:6.3f}%")
    print(f"end_epoch: {1e3 * closing:.3f} ms (median of {len(end_epoch)})")

    command = "python bench/bench_monitor.py" + ("" if not args.threads else f" --threads {args.threads}")
    lines = [START, "## CollapseMonitor overhead on a training step (issue 4)", "",
             (f"- date: {dt.date.today().isoformat()}; machine: {machine(torch.get_num_threads(), torch.__version__)}, "
              f"device {device.type}"),
             (f"- model: MLP VAE 784-512-512-32 (Gaussian, data-dependent encoder std), β-ELBO, Adam, "
              f"batch {BATCH}, mnist10k ({steps_per_epoch} steps per epoch)"),
             (f"- command: `{command} --write docs/benchmarks.md` ({args.rounds} rounds × {args.chunk} steps per "
              "variant, interleaved; medians)"), "",
             ("| variant | time per step (ms) | end-to-end difference | monitor call per step (µs) "
              "| overhead per epoch (calls + `end_epoch`) |"),
             "|---|---:|---:|---:|---:|"]
    for name, per_step, difference, call, share in rows:
        if name == "no monitor":
            lines.append(f"| {name} | {1e3 * per_step:.2f} | — | — | — |")
        else:
            lines.append(f"| `{name}` | {1e3 * per_step:.2f} | {100 * difference:+.1f}% | {1e6 * call:.0f} "
                         f"| {100 * share:.2f}% |")
    worst = max(row[4] for row in rows[1:])
    quartiles = statistics.quantiles(samples["no monitor"], n=4)
    noise = (quartiles[2] - quartiles[0]) / base
    within = max(abs(row[2]) for row in rows[1:]) <= noise
    lines += ["", (f"Per batch the monitor adds a few elementwise operations and three per-dimension sums on the "
                   f"device, with no host synchronisation; `end_epoch` (one host sync per level, the minibatch MI "
                   f"estimate on {BATCH} examples, the hysteresis step) takes {1e3 * closing:.2f} ms once per epoch. "
                   f"Timed directly, the costliest variant adds {100 * worst:.2f}% to an epoch. The end-to-end "
                   f"differences between interleaved variants are {'within' if within else 'comparable to'} the "
                   f"noise of the step itself (interquartile spread {100 * noise:.0f}% of the median between chunks "
                   "on this shared machine), so the direct timing is the number to read. The trainer's path reuses "
                   "the objective's KL and pays only for the posterior-mean sums."), END]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, START, END, section)


if __name__ == "__main__":
    main()
