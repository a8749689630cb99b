"""Benchmark: the diagnostics pass on 10,000 MNIST digits with S = 1000 importance samples.

Model: build_model("vae", "mlp", x_dim=784, latent_dims=[16], hidden=[256]) with a data-dependent
encoder std and a Gaussian likelihood (η_dec = 1, as the paper's MNIST VAE), trained for a few
epochs first so that the numbers are those of a real model (timing does not depend on the weights).

Methods, each run in a fresh subprocess. Peak extra memory: the resident-set high-water mark
(VmHWM) is reset once the data and the model are loaded (``/proc/self/clear_refs``), and the
method's peak is VmHWM minus the resident set at that moment — torch's allocations included, which
tracemalloc cannot see:

  collapsekit likelihood   importance_sampled_log_likelihood: examples × sample chunks per pass;
                           on all N, and on the loop's subset side by side with the loop
  collapsekit diagnose     diagnose_model: statistics pass, every metric (full-dataset MI with
                           bootstrap and per-dimension values, minibatch MI, AU, (ε, δ), types)
                           and the same likelihood; and once without the likelihood (metrics only)
  paper's loop             the official scripts' calc_nll_p_x: a Python loop over examples, the S
                           samples of one example drawn from a MultivariateNormal and decoded in
                           one call; run on a subset and extrapolated linearly to N
  per-sample loop          one decoder call per example and per sample; a smaller subset,
                           extrapolated linearly

Writes its section of docs/benchmarks.md with --write (only between its markers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import _common
import torch

from collapsekit.data import load
from collapsekit.diagnostics import diagnose_model, importance_sampled_log_likelihood
from collapsekit.models import build_model

START, END = "<!-- bench:diagnostics:start -->", "<!-- bench:diagnostics:end -->"
MODEL = {"kind": "vae", "arch": "mlp", "x_dim": 784, "latent_dims": [16], "hidden": [256], "encoder_std": "data",
         "eta_dec": 1.0}
METHODS = ("likelihood", "likelihood_subset", "diagnose", "metrics", "paper_loop", "sample_loop")


def data() -> torch.Tensor:
    return torch.as_tensor(load("mnist10k").x, dtype=torch.float32)


def trained_weights(path: Path, epochs: int) -> None:
    """A few epochs of the β = 1 ELBO (Adam), saved with safetensors."""
    from safetensors.torch import save_file

    from collapsekit.objectives import build_objective

    torch.manual_seed(0)
    x = data()
    model = build_model(**MODEL)
    objective = build_objective("elbo", beta=1.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for rows in torch.randperm(len(x)).split(128):
            optimiser.zero_grad()
            objective(model(x[rows])).loss.backward()
            optimiser.step()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def load_model(path: Path) -> Any:
    from safetensors.torch import load_file

    model = build_model(**MODEL)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


# -- the baselines ------------------------------------------------------------------------------------
def _log_normal_rows(value: torch.Tensor, mean: torch.Tensor | float, std: float) -> torch.Tensor:
    """The official scripts' logprob_Multivarate_Normal with an isotropic std."""
    dim = value.shape[1]
    return (-0.5 * ((value - mean) ** 2).sum(1) / std**2 - dim * math.log(std) - 0.5 * dim * math.log(2 * math.pi))


def paper_loop(model: Any, x: torch.Tensor, n_samples: int) -> np.ndarray:
    """calc_nll_p_x of the official code, adapted to a data-dependent std: one example at a time."""
    eta_dec, eta_enc = model.likelihood.eta_dec, model.eta_enc
    out = np.empty(len(x))
    with torch.no_grad():
        mu, log_var = model.encoder(x)
        for i in range(len(x)):
            q = torch.distributions.MultivariateNormal(mu[i], scale_tril=torch.diag_embed((0.5 * log_var[i]).exp()))
            z = q.sample((n_samples,))
            log_w = (_log_normal_rows(x[i].unsqueeze(0).repeat(n_samples, 1), model.decoder(z), eta_dec)
                     + _log_normal_rows(z, 0.0, eta_enc) - q.log_prob(z))
            out[i] = float(torch.logsumexp(log_w, 0)) - math.log(n_samples)
    return out


def sample_loop(model: Any, x: torch.Tensor, n_samples: int) -> np.ndarray:
    """The literal reading: for each example, for each sample, one decoder pass."""
    eta_dec, eta_enc = model.likelihood.eta_dec, model.eta_enc
    out = np.empty(len(x))
    with torch.no_grad():
        mu, log_var = model.encoder(x)
        for i in range(len(x)):
            q = torch.distributions.Normal(mu[i], (0.5 * log_var[i]).exp())
            log_w = []
            for _ in range(n_samples):
                z = q.sample().unsqueeze(0)
                log_w.append(_log_normal_rows(x[i:i + 1], model.decoder(z), eta_dec) + _log_normal_rows(z, 0.0, eta_enc)
                             - q.log_prob(z).sum(1))
            out[i] = float(torch.logsumexp(torch.cat(log_w), 0)) - math.log(n_samples)
    return out


# -- one method in this process (the child) -------------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def run_method(method: str, weights: Path, n_samples: int, subset: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    x, model = data(), load_model(weights)
    rows = len(x)
    # warm up lazily initialised code paths, untimed, for every method alike
    if method in ("paper_loop", "sample_loop"):
        (paper_loop if method == "paper_loop" else sample_loop)(model, x[-1:], 2)
    else:
        importance_sampled_log_likelihood(model, x[-1:], n_samples=2)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")    # reset the high-water mark to the current resident set
    resident = _status_kib("VmRSS")
    torch.manual_seed(1)
    start = time.perf_counter()
    extra: dict = {}
    if method == "likelihood":
        ll, elbo = importance_sampled_log_likelihood(model, x, n_samples=n_samples)
        extra = {"log_likelihood": float(ll.mean()), "elbo": float(elbo.mean()),
                 "subset_log_likelihood": float(ll[:subset].mean())}
    elif method == "likelihood_subset":
        rows = subset
        ll, _ = importance_sampled_log_likelihood(model, x[:subset], n_samples=n_samples)
        extra = {"subset_log_likelihood": float(ll.mean())}
    elif method in ("diagnose", "metrics"):
        report = diagnose_model(model, x, n_samples=n_samples if method == "diagnose" else None)
        extra = {"log_likelihood": report.log_likelihood, "active_units": report.active_units,
                 "mutual_info": report.mutual_info, "mutual_info_minibatch": report.mutual_info_minibatch}
    elif method in ("paper_loop", "sample_loop"):
        rows = subset
        ll = (paper_loop if method == "paper_loop" else sample_loop)(model, x[:subset], n_samples)
        extra = {"subset_log_likelihood": float(ll.mean())}
    seconds = time.perf_counter() - start
    return {"method": method, "seconds": seconds, "rows": rows, "resident_mib": resident / 1024,
            "peak_extra_mib": (_status_kib("VmHWM") - resident) / 1024, **extra}


def in_subprocess(method: str, weights: Path, args: argparse.Namespace, subset: int) -> dict:
    command = [sys.executable, __file__, "--child", method, "--weights", str(weights), "--samples", str(args.samples),
               "--subset", str(subset), "--threads", str(args.threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def relative(ratio: float) -> str:
    """A time ratio (theirs / ours) in words."""
    if abs(ratio - 1) < 0.05:
        return f"about as fast ({ratio:.2f}× our time)"
    return f"{ratio:.1f}× slower" if ratio > 1 else f"{1 / ratio:.1f}× faster"


def machine(threads: int) -> str:
    return _common.machine(threads, torch.__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="importance samples S per example")
    parser.add_argument("--loop-examples", type=int, default=100, help="examples the paper's loop runs on")
    parser.add_argument("--sample-loop-examples", type=int, default=3, help="examples the per-sample loop runs on")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs before the benchmark")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs for the subset comparison")
    parser.add_argument("--write", type=Path, help="update this Markdown file's diagnostics section")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--subset", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_method(args.child, args.weights, args.samples, args.subset, args.threads)))
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vae.safetensors"
        trained_weights(weights, args.epochs)
        results: dict[str, dict] = {}

        def record(method: str, subset: int) -> None:
            r = in_subprocess(method, weights, args, subset)
            print(f"{method:18s} {r['seconds']:9.2f} s on {r['rows']:6d} rows  "
                  f"peak extra {r['peak_extra_mib']:7.1f} MiB")
            if method not in results or r["seconds"] < results[method]["seconds"]:
                results[method] = r

        record("likelihood", args.loop_examples)
        record("diagnose", 0)
        record("metrics", 0)
        # the speed comparison: the same examples, interleaved, best of --repeats (the load drifts)
        for _ in range(args.repeats):
            record("likelihood_subset", args.loop_examples)
            record("paper_loop", args.loop_examples)
        record("sample_loop", args.sample_loop_examples)
    load_after = os.getloadavg()
    n = 10_000
    ours = results["likelihood"]
    full_time = {m: results[m]["seconds"] * n / results[m]["rows"] for m in results}
    names = {"likelihood": "collapsekit `importance_sampled_log_likelihood`, all examples",
             "diagnose": "collapsekit `diagnose_model` (every metric + the likelihood), all examples",
             "metrics": "collapsekit `diagnose_model(..., n_samples=None)` (statistics pass + every metric)",
             "likelihood_subset": f"collapsekit likelihood on the loop's {args.loop_examples} examples, extrapolated",
             "paper_loop": f"paper's loop (per example, S samples per decoder call; {args.loop_examples} examples, "
                           "extrapolated)",
             "sample_loop": f"per-sample loop (one decoder call per sample; {args.sample_loop_examples} examples, "
                            "extrapolated)"}
    lines = [START, "## Diagnostics: `diagnose_model` and the importance-sampled log-likelihood (issue 4)", "",
             f"- date: {dt.date.today().isoformat()}; machine: {machine(args.threads)}; load average "
             f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (other jobs shared the cores)",
             f"- data: mnist10k, 10,000 × 784; model: MLP VAE 784-256-16 (data-dependent encoder std, Gaussian "
             f"likelihood η_dec = 1), {args.epochs} epochs of β = 1 ELBO training; S = {args.samples} importance "
             "samples per example, float32 model, float64 accumulation",
             f"- command: `python bench/bench_diagnostics.py --threads {args.threads} --write docs/benchmarks.md`; "
             "each method in a fresh subprocess after an untimed warm-up; the subset rows are the best of "
             f"{args.repeats} interleaved runs; peak extra memory = the peak resident set during the method minus "
             f"the resident set after loading the data and the model ({ours['resident_mib']:.0f} MiB; the "
             "high-water mark is reset in between)", "",
             "| method | time for 10,000 examples (s) | time relative to ours (same examples) "
             "| peak extra memory (MiB) | mean log p(x) of the timed subset (nats; the first "
             f"{args.loop_examples} examples, {args.sample_loop_examples} for the per-sample loop) |",
             "|---|---:|---:|---:|---:|"]
    reference = full_time["likelihood_subset"]
    for method in ("likelihood", "diagnose", "metrics", "likelihood_subset", "paper_loop", "sample_loop"):
        r = results[method]
        ratio = f"{full_time[method] / reference:.1f}×" if method in ("paper_loop", "sample_loop") else "—"
        subset_ll = r.get("subset_log_likelihood")
        lines.append(f"| {names[method]} | {full_time[method]:,.1f} | {ratio} | {r['peak_extra_mib']:.0f} | "
                     f"{'—' if subset_ll is None else f'{subset_ll:.2f}'} |")
    diag, metrics = results["diagnose"], results["metrics"]
    decoder_flops = 2 * n * args.samples * (16 * 256 + 256 * 784)             # two matrix products per sample
    lines += ["", "Ours decodes up to 100 samples of a batch of examples per pass (about 10⁶ output values, memory "
              "O(sample_chunk·batch·D), independent of N and S) and accumulates the log-sum-exp over the chunks in "
              f"float64: {full_time['likelihood']:.0f} s for all 10,000 examples in {ours['peak_extra_mib']:.0f} MiB. "
              f"On the same examples the official scripts' loop is {relative(full_time['paper_loop'] / reference)} "
              f"and a per-sample loop {relative(full_time['sample_loop'] / reference)} (both extrapolated linearly "
              "from a subset, exact for a loop whose cost per example is constant). The official loop already "
              "decodes the S samples of an example in one call, so on a CPU both are bound by the same decoder "
              f"matrix products ({decoder_flops:.1e} flops here) and batching examples adds little; it removes "
              "the per-example Python and distribution overhead, which matters more for small decoders and on "
              "GPUs (not measured here). The log-likelihoods of the same examples agree to Monte Carlo error "
              "(different draws). The "
              f"whole `diagnose_model` pass (statistics, AU = {diag['active_units']}, full-dataset I(x; z) = "
              f"{diag['mutual_info']:.2f} nats with a 200-resample bootstrap, minibatch I = "
              f"{diag['mutual_info_minibatch']:.2f} nats, and the likelihood) took {diag['seconds']:.0f} s; without "
              f"the likelihood, the statistics pass and every metric take {metrics['seconds']:.0f} s. Rows measured "
              "minutes apart on this shared machine differ with its load (compare the two likelihood rows); the "
              "interleaved subset rows are the like-for-like comparison.", END]
    section = "\n".join(lines)
    print(section)
    if args.write:
        _common.write_section(args.write, START, END, section)


if __name__ == "__main__":
    main()
