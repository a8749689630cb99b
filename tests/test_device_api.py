"""The API on a device that is not the CPU, and in half precision, checked on a machine with a CPU only.

A second device is :mod:`fake_device`'s: tensors that say they are on ``meta`` but hold CPU data, where
mixing them with a CPU tensor raises as it does on a GPU. ``diagnose`` with a plain function as encoder
leaves the data on the function's device; ``evaluate`` feeds a model on a device; ``Moments.from_data``
reads a tensor on a device; the CollapseMonitor and the diagnostics sum in float32 whatever the input
dtype (issue 14 §5–7).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from collapsekit.diagnostics import diagnose, diagnose_model
from collapsekit.errors import DataError, ParameterError
from collapsekit.theory import Moments
from collapsekit.training.monitor import CollapseMonitor

from fake_device import DeviceMix, FakeDevice, OnDevice

N, D, LATENT = 96, 6, 3


def data(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


class LinearEncoder:
    """A plain function (no nn.Module) holding weights on a device, asserting its input is there too."""

    def __init__(self, device: str = "cpu") -> None:
        g = torch.Generator().manual_seed(1)
        self.weight = (torch.randn(D, 2 * LATENT, generator=g) * 0.5).to(device)
        self.calls: list[torch.device] = []

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(x.device)
        assert x.device == self.weight.device, f"the batch came on {x.device}, the weights are on {self.weight.device}"
        out = x @ self.weight
        return out[:, :LATENT], out[:, LATENT:] - 1.0


class LinearDecoder:
    def __init__(self, device: str = "cpu") -> None:
        self.weight = (torch.randn(LATENT, D, generator=torch.Generator().manual_seed(2)) * 0.5).to(device)

    def __call__(self, z: torch.Tensor) -> Independent:
        assert z.device == self.weight.device
        return Independent(Normal(z @ self.weight, 1.0), 1)


def same_report(a, b) -> None:
    for la, lb in zip(a.levels, b.levels):
        np.testing.assert_allclose(la.kl_per_dim, lb.kl_per_dim, rtol=1e-6)
        np.testing.assert_allclose(la.variance_of_mean, lb.variance_of_mean, rtol=1e-6)
    if a.log_likelihood is not None:
        assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-6)
        assert a.elbo == pytest.approx(b.elbo, rel=1e-6)


# -- the fake device itself -------------------------------------------------------------------------------
def test_the_fake_device_refuses_to_mix_with_the_cpu():
    with FakeDevice():
        weight = torch.randn(D, 2).to("meta")
        assert isinstance(weight, OnDevice) and weight.device.type == "meta"
        assert torch.equal((data().to("meta") @ weight).cpu(), data() @ weight.cpu())
        with pytest.raises(DeviceMix):
            data() @ weight


# -- §5: data stay on the device ---------------------------------------------------------------------------
def test_diagnose_with_a_plain_function_leaves_the_data_on_its_device():
    """Before, each batch was moved to the CPU before it reached a plain function: here the function's
    assertion (and the device mix its matrix product would be) failed."""
    reference = diagnose(LinearEncoder(), data(), LinearDecoder(), n_samples=20, mi_bootstrap=5)
    with FakeDevice():
        encoder = LinearEncoder("meta")
        report = diagnose(encoder, data().to("meta"), LinearDecoder("meta"), n_samples=20, mi_bootstrap=5)
    assert encoder.calls and all(device.type == "meta" for device in encoder.calls)
    same_report(report, reference)


def test_diagnose_moves_cpu_data_to_a_plain_function_on_the_device_when_told():
    reference = diagnose(LinearEncoder(), data(), mi_bootstrap=5)
    with FakeDevice():
        encoder = LinearEncoder("meta")
        report = diagnose(encoder, data(), device="meta", mi_bootstrap=5)     # numpy-backed CPU data
        with pytest.raises(AssertionError, match="the batch came on cpu"):
            diagnose(LinearEncoder("meta"), data(), mi_bootstrap=5)           # no device: the data's own
    same_report(report, reference)


def tiny_model(kind: str = "vae"):
    from collapsekit.models import build_model

    torch.manual_seed(0)
    return build_model(kind, "mlp", x_dim=D, latent_dims=[LATENT] if kind == "vae" else [LATENT, 2], hidden=[8])


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_diagnose_model_runs_where_it_is_told_and_goes_back(kind):
    model = tiny_model(kind)
    reference = diagnose_model(model, data(), n_samples=10, mi_bootstrap=5)
    with FakeDevice():
        report = diagnose_model(model, data(), n_samples=10, mi_bootstrap=5, device="meta")
    assert all(p.device.type == "cpu" and not isinstance(p, OnDevice) for p in model.parameters())
    same_report(report, reference)


def test_evaluate_feeds_a_model_on_a_device():
    from collapsekit.objectives import BetaELBO
    from collapsekit.training import TrainingData, evaluate

    model, cpu_data = tiny_model(), TrainingData(x=data())
    reference = evaluate(model, BetaELBO(1.0), cpu_data, batch_size=40)
    with FakeDevice():
        model.to("meta")
        got = evaluate(model, BetaELBO(1.0), cpu_data, batch_size=40)      # before: CPU slices, a device mix
    assert got["loss"] == pytest.approx(reference["loss"], rel=1e-6)
    assert np.allclose(got["kl_per_dim"], reference["kl_per_dim"], rtol=1e-6)


def test_moments_from_data_reads_a_tensor_on_a_device_in_chunks():
    x, y = data(1000), data(1000, seed=5)[:, :2]
    expected = Moments.from_data(x.numpy(), y.numpy(), chunk_rows=128)
    with FakeDevice():
        got = Moments.from_data(x.to("meta"), y.to("meta"), chunk_rows=128)
        monitor = CollapseMonitor(data=x.to("meta"), warn=False)          # the monitor's docstring example
    assert np.array_equal(got.xx, expected.xx) and np.array_equal(got.xy, expected.xy)
    assert np.allclose(monitor.moments.xx, expected.xx, rtol=1e-12)
    bf16 = Moments.from_data(x.bfloat16())                                # numpy has no bfloat16
    assert np.allclose(bf16.xx, expected.xx, atol=0.05)


def test_moments_of_a_tensor_without_data_is_a_one_line_data_error():
    with pytest.raises(DataError, match="^x: a tensor on device meta cannot be copied to the CPU"):
        Moments.from_data(torch.empty(10, 3, device="meta"))
    bad = data(50)
    bad[7, 1] = float("inf")
    with pytest.raises(DataError, match="row 7 contains an infinite value"):
        Moments.from_data(bad, chunk_rows=4)


# -- §7: device names -------------------------------------------------------------------------------------------
def test_device_names(monkeypatch):
    from collapsekit._validation import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ParameterError, match="must be auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ParameterError, match="^device cuda: CUDA is not available here"):
            resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ParameterError, match="has 2 CUDA device"):
        resolve_device("cuda:2", name="--device")


def test_the_likelihood_batch_is_chosen_per_device():
    from collapsekit.diagnostics.likelihood import auto_batch_size

    assert auto_batch_size(None, 100, 784, "cpu") == 13                   # 2²⁰ values per pass
    assert auto_batch_size(None, 100, 784, "cuda") == 213                 # 2²⁴
    assert auto_batch_size(None, 100, 2, "cpu") == 1024 and auto_batch_size(None, 100, 2, "cuda") == 16384
    assert auto_batch_size(7, 100, 784, "cuda") == 7


# -- §6: half precision ---------------------------------------------------------------------------------------
ROWS = 51_200


def half_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(ROWS, 4, generator=g) * 3, torch.randn(ROWS, 4, generator=g) * 0.5 - 1


def monitored(mu: torch.Tensor, log_var: torch.Tensor, dtype: torch.dtype, *, by_level: bool) -> dict:
    monitor = CollapseMonitor(warn=False)
    for start in range(0, ROWS, 512):
        m, lv = mu[start:start + 512].to(dtype), log_var[start:start + 512].to(dtype)
        if by_level:      # update_output's path: loc, scale and the objective's batch-mean KL in the input dtype
            scale = (0.5 * lv).exp()
            kl = (0.5 * (scale**2 + m**2 - 1 - 2 * scale.log())).mean(0)
            monitor.update_level("z", m, scale, kl)
        else:
            monitor.update(m, lv)
    return monitor.end_epoch()["z"]


@pytest.mark.parametrize("by_level", [False, True], ids=["update", "update_level"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_monitor_in_half_precision_stays_with_float32(dtype, by_level):
    """Over 51,200 rows the KL per dimension was 5.12 (bf16) and inf (fp16) against 6.19 (float32):
    the sums were kept in the input dtype. Now the half-precision run differs from float32 only by the
    rounding of its inputs (measured: 5e-5 relative), and is float32's to 1e-5 on the rounded inputs."""
    mu, log_var = half_inputs()
    exact = monitored(mu, log_var, torch.float32, by_level=by_level)
    rounded = monitored(mu.to(dtype).float(), log_var.to(dtype).float(), torch.float32, by_level=by_level)
    got = monitored(mu, log_var, dtype, by_level=by_level)
    for key in ("kl_per_dim", "mean_variance"):
        assert np.all(np.isfinite(got[key]))
        np.testing.assert_allclose(got[key], exact[key], rtol=2e-3)
        np.testing.assert_allclose(got[key], rounded[key], rtol=1e-5 if not by_level else 5e-3)
    assert got["examples"] == ROWS


def test_the_monitor_adds_no_host_read_for_half_inputs():
    from test_training_device import HostReads

    mu, log_var = half_inputs()
    monitor = CollapseMonitor(warn=False)
    with HostReads() as counter:
        for start in range(0, 4096, 512):
            monitor.update(mu[start:start + 512].half(), log_var[start:start + 512].half())
    assert counter.count == 0


def test_a_half_precision_encoder_is_diagnosed_in_float32():
    """A float16 encoder whose log-variance is 12 (exp overflows float16) and a bfloat16 model."""
    x = data()

    def encoder(batch):
        mu = (batch[:, :LATENT] * 100).half()
        return mu, torch.full_like(mu, 12.0)

    report = diagnose(encoder, x, mi_bootstrap=5)
    expected = 0.5 * (np.exp(12.0) + (x[:, :LATENT].double().numpy() * 100) ** 2 - 1 - 12.0).mean(0)
    np.testing.assert_allclose(report.levels[0].kl_per_dim, expected, rtol=1e-3)

    model = tiny_model()
    reference = diagnose_model(model, x, n_samples=10, mi_bootstrap=5)
    got = diagnose_model(model.to(torch.bfloat16), x, n_samples=10, mi_bootstrap=5)
    assert np.isfinite(got.log_likelihood)
    np.testing.assert_allclose(got.levels[0].kl_per_dim, reference.levels[0].kl_per_dim, rtol=0.05, atol=0.01)
    assert got.log_likelihood == pytest.approx(reference.log_likelihood, rel=0.02)


# -- §7: diagnose a run on a device ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from collapsekit.training import RunConfig, train

    config = RunConfig.parse({"data": {"spec": "gaussian:d=6,decay=0.6,n=200,seed=3"},
                              "model": {"kind": "vae", "arch": "mlp", "latent_dims": [3], "hidden": [8]},
                              "train": {"epochs": 2, "batch_size": 50, "progress": False}})
    run_dir = tmp_path_factory.mktemp("device") / "run"
    train(config, run_dir)
    return run_dir


def test_diagnose_run_loads_the_model_on_the_device_and_feeds_it_there(small_run):
    from collapsekit.runs import diagnose_run

    reference = diagnose_run(small_run, n_samples=20)                       # auto: the CPU here
    assert next(reference.model.parameters()).device.type == "cpu"
    with FakeDevice():
        diagnosis = diagnose_run(small_run, n_samples=20, device="meta")
        assert all(isinstance(p, OnDevice) for p in diagnosis.model.parameters())
    assert diagnosis.data.x.device.type == "cpu"                            # the data stay in CPU memory
    same_report(diagnosis.report, reference.report)


def test_diagnose_refuses_a_device_this_machine_does_not_have(small_run, capsys):
    from collapsekit.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["diagnose", str(small_run), "--device", "cuda", "--samples", "5"]) == 2
    assert "device cuda: CUDA is not available here" in capsys.readouterr().err


def test_reproduce_takes_a_device(tmp_path, capsys, monkeypatch):
    from collapsekit.cli import main
    from collapsekit.experiments.presets import get_preset
    from collapsekit.experiments.reproduction.core import Context

    context = lambda device: Context(preset=get_preset("theorem2"), scale="quick", out_dir=tmp_path,  # noqa: E731
                                     device=device)
    if not torch.cuda.is_available():
        assert context(None).accelerator == context("auto").accelerator == context("cpu").accelerator == "cpu"
        assert main(["reproduce", "theorem2", "--device", "cuda", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
        assert "--device cuda: CUDA is not available here" in capsys.readouterr().err
        assert not (tmp_path / "r" / "runs").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert context(None).accelerator == "cuda" and context("cpu").accelerator == "cpu"
