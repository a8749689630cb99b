"""CollapseMonitor and the explanation engine.

The central claims, checked by training the theory's linear VAE on exact synthetic data:
the warning appears in a collapsing run (naming exactly the dimensions measured collapsed, as many as
the closed form predicts) and not in a healthy one; and the β it prescribes, applied, leaves fewer
collapsed dimensions, exactly as many as predicted.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from collapsekit.data import load
from collapsekit.diagnostics.explain import Explanation, ScheduleInfo, explain_collapse
from collapsekit.errors import ParameterError
from collapsekit.models import build_model
from collapsekit.objectives import build_objective
from collapsekit.objectives.schedules import LinearWarmup
from collapsekit.objectives.terms import kl_per_dimension
from collapsekit.theory import Moments, predict_vae
from collapsekit.training import TrainingData, evaluate
from collapsekit.training.monitor import CollapseMonitor, CollapseWarning

# With β = 2 (η_dec = 1) only the eigenvalues 9 and 4 exceed βη_dec²: 2 of the 4 latent dimensions
# collapse. With β = 0.15 every one of them stays active (the 4th keeps ½·log(0.25/0.15) = 0.26 nats).
SPEC = "gaussian:eigs=9:4:1:0.25:0.04:0.01,n=2000,seed=1,exact=1"
LATENT = 4
COLLAPSING_BETA, HEALTHY_BETA = 2.0, 0.15



@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, Moments]:
    ds = load(SPEC)
    return torch.as_tensor(ds.x, dtype=torch.float32), Moments.from_data(ds.x)


def train_linear_vae(x: torch.Tensor, beta: float, monitor: CollapseMonitor | None, *, epochs: int = 30,
                     batch: int = 250, seed: int = 0) -> torch.nn.Module:
    """A plain PyTorch loop (no trainer): Adam on the β-ELBO, the monitor fed the encoder's (mu, log_var)."""
    torch.manual_seed(seed)
    model = build_model("vae", "linear", x_dim=x.shape[1], latent_dims=[LATENT])
    objective = build_objective("elbo", beta=beta)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0])
        for start in range(0, x.shape[0], batch):
            mu, log_var = model.encoder(x[order[start:start + batch]])
            output = model(x[order[start:start + batch]])
            loss = objective(output).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.update(mu, log_var)
        if monitor is not None:
            monitor.end_epoch()
    return model


def measured_collapsed(model: torch.nn.Module, x: torch.Tensor, threshold: float = 0.01) -> list[int]:
    """Dimensions whose KL over the whole data set is below ``threshold`` nats, measured without the monitor."""
    report = evaluate(model, build_objective("elbo"), TrainingData(x=x), batch_size=x.shape[0])
    return [int(j) for j in np.flatnonzero(np.asarray(report["kl_per_dim"][0]) < threshold)]


def run_with_monitor(x: torch.Tensor, moments: Moments, beta: float) -> tuple[CollapseMonitor, torch.nn.Module,
                                                                              list[CollapseWarning]]:
    monitor = CollapseMonitor(moments=moments, hyper={"beta": beta}, linear=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = train_linear_vae(x, beta, monitor)
    return monitor, model, [w.message for w in caught if issubclass(w.category, CollapseWarning)]


@pytest.fixture(scope="module")
def collapsing(data):
    x, moments = data
    return run_with_monitor(x, moments, COLLAPSING_BETA)


# -- the issue's two claims --------------------------------------------------------------------------------
def test_warning_names_exactly_the_collapsed_dimensions(data, collapsing):
    x, moments = data
    monitor, model, caught = collapsing
    prediction = predict_vae(moments, LATENT, beta=COLLAPSING_BETA)
    assert prediction.n_collapsed == 2
    assert len(caught) == 1, [str(w) for w in caught]
    warning = caught[0]
    measured = measured_collapsed(model, x)
    assert warning.dims == measured and len(measured) == prediction.n_collapsed
    assert f"{prediction.n_collapsed} of {LATENT} dimensions collapsed" in str(warning)
    assert monitor.warnings_issued[0].dims == measured
    assert [e.cause for e in warning.explanations] == ["beta"]
    beta = warning.explanations[0]
    assert "with β = 2 and η_dec = 1 the data's spectrum supports 2 of 4" in beta.message
    assert "(predicted)" in beta.prescription and "linear-theory estimate" not in str(beta)
    assert beta.predicted["current"]["n_collapsed"] == prediction.n_collapsed


def test_no_warning_in_a_healthy_run(data):
    x, moments = data
    assert predict_vae(moments, LATENT, beta=HEALTHY_BETA).n_collapsed == 0
    monitor, model, caught = run_with_monitor(x, moments, HEALTHY_BETA)
    assert caught == [] and monitor.warnings_issued == []
    assert measured_collapsed(model, x) == [] and monitor.history[-1]["levels"]["z"]["active_units"] == LATENT


def test_rank_explanation_when_the_data_have_fewer_modes_than_latent_dimensions():
    moments = Moments(xx=np.diag([9.0, 4.0, 1.0, 0.0, 0.0]))
    found = explain_collapse([2, 3, 4], 5, moments=moments, hyper={"beta": 2.0}, linear=True)
    assert [e.cause for e in found] == ["rank", "beta"]
    assert found[0].predicted["usable_modes"] == 3
    assert found[1].predicted["n_active"] == 3 and found[1].predicted["n_collapsed"] == 2


def test_prescription_reduces_collapse_as_predicted(data, collapsing):
    x, moments = data
    _, model, caught = collapsing
    before = len(measured_collapsed(model, x))
    beta_explanation = next(e for e in caught[0].explanations if e.cause == "beta")
    prescribed = beta_explanation.predicted["beta"]
    assert prescribed < COLLAPSING_BETA and beta_explanation.predicted["parameter"] == "beta"
    expected = predict_vae(moments, LATENT, beta=prescribed).n_collapsed
    assert beta_explanation.predicted["n_collapsed"] == expected
    after = len(measured_collapsed(train_linear_vae(x, prescribed, None), x))
    assert after < before
    assert after == expected


# -- hysteresis ----------------------------------------------------------------------------------------------
def feed(monitor: CollapseMonitor, kl: list[float], rows: int = 8) -> None:
    """One batch whose per-dimension KL to N(0, 1) is exactly ``kl`` for every example: mu = √(2·KL), var = 1."""
    mu = torch.tensor(kl).sqrt().mul(math.sqrt(2.0)).expand(rows, -1).clone()
    monitor.update(mu, torch.zeros_like(mu))


def test_hysteresis_warns_once_while_oscillating_and_rearms_after_recovery():
    monitor = CollapseMonitor(warn=False)
    oscillating = [0.005, 0.015, 0.008, 0.019, 0.004, 0.012] * 3     # around 0.01, never ≥ 0.02 twice running
    sequence = [0.001] * 3 + oscillating
    for value in sequence:
        feed(monitor, [value, 1.0, 0.5])
        monitor.end_epoch()
    assert [(e.epoch, e.dims) for e in monitor.warnings_issued] == [(2, [0])]
    # resume from JSON: the memory of the warning survives
    resumed = CollapseMonitor(warn=False)
    resumed.load_state_dict(json.loads(json.dumps(monitor.state_dict())))
    for value in oscillating + [0.05, 0.05] + [0.001, 0.001]:
        feed(resumed, [value, 1.0, 0.5])
        resumed.end_epoch()
    epochs = [e.epoch for e in resumed.warnings_issued]
    assert epochs == [2, len(sequence) + len(oscillating) + 4]        # re-armed by the recovery, warned again


#: A monitor's state as the trainer saved it in a checkpoint before the monitor was split into a package
#: (collapsekit 0.x, STATE_FORMAT 1; the trainer keeps the last history record only): it must still load.
SAVED_BEFORE_THE_SPLIT = json.loads(r'''{"format": 1, "epoch": 2, "step": 2, "primary": "z",
 "levels": {"z": {"dim": 2, "below": [0, 2], "above": [2, 0], "warned": [1], "pending": 0}},
 "history": [{"epoch": 2, "step": 2, "levels": {"z": {"kl_per_dim": [1.0, 0.0009999871253967285],
   "kl": 1.0009999871253967, "active_units": 0, "mean_variance": [0.0, 0.0], "collapsed": [1], "n_active": 1,
   "n_collapsed": 1, "inactive": [0], "confirmed_collapsed": [1], "mutual_info_minibatch": -0.5161213217105445,
   "mutual_info_ceiling": 1.3862943611198906, "examples": 4}}, "warnings": []}],
 "warnings_issued": [{"epoch": 1, "level": "z", "dims": [1], "new_dims": [1],
   "message": "Posterior collapse at epoch 1: z: 1 of 2 dimensions collapsed (mean KL < 0.01 nats on the epoch's batches, for ≥ 1 epoch): 1",
   "explanations": [{"level": "z", "cause": "generic", "message": "these dimensions carry (almost) no information",
                     "prescription": "lower β", "predicted": {}}]}]}''')


def test_a_state_saved_before_the_split_still_loads():
    monitor = CollapseMonitor(warn=False, patience=1)
    monitor.load_state_dict(SAVED_BEFORE_THE_SPLIT)
    assert monitor.state_dict() == SAVED_BEFORE_THE_SPLIT
    assert (monitor.epoch, monitor.step, monitor.collapsed_dims()) == (2, 2, [1])
    assert monitor.epoch_metrics()["n_active"] == [1]
    feed(monitor, [1.0, 0.001])
    monitor.end_epoch()
    assert [e.epoch for e in monitor.warnings_issued] == [1]          # dimension 1 was warned about already
    feed(monitor, [0.001, 0.001])
    monitor.end_epoch()
    assert [(e.epoch, e.dims, e.new_dims) for e in monitor.warnings_issued][1] == (4, [0, 1], [0])


def test_options_object_and_keywords_make_the_same_monitor():
    from collapsekit.training.monitor import MonitorOptions

    options = MonitorOptions(patience=3, hyper={"beta": 2.0}, eta_enc={"z": 0.5}, warn=False)
    by_object, by_keywords = CollapseMonitor(options), CollapseMonitor(patience=3, hyper={"beta": 2.0},
                                                                       eta_enc={"z": 0.5}, warn=False)
    assert by_object.options == by_keywords.options and by_object.patience == 3 and by_object.eta_enc == {"z": 0.5}
    overridden = CollapseMonitor(options, patience=1)                  # keywords replace fields of the object
    assert overridden.patience == 1 and overridden.hyper == {"beta": 2.0} and options.patience == 3
    overridden.n_features = 784                                        # attributes write the monitor's own copy
    assert overridden.options.n_features == 784 and options.n_features is None
    for bad in ({"patience": 0}, {"recover_factor": 0.5}, {"mi_examples": 1}, {"loss_reduction": "max"},
                {"hyper": {"beta": -1}}, {"moments": "not moments"}):
        with pytest.raises(ParameterError):
            MonitorOptions(**bad)
        with pytest.raises(ParameterError):
            CollapseMonitor(**bad)
    with pytest.raises(TypeError, match="unexpected keyword argument 'patiense'"):
        CollapseMonitor(patiense=3)


def test_a_single_noisy_epoch_does_not_warn():
    monitor = CollapseMonitor(warn=False)
    for value in [0.5, 0.001, 0.5, 0.001, 0.5]:
        feed(monitor, [value, 1.0])
        monitor.end_epoch()
    assert monitor.warnings_issued == []


def test_one_warning_for_a_collapse_in_progress():
    # dimensions 0 and 1 go below the threshold one epoch apart: a single warning names both
    monitor = CollapseMonitor(warn=False, patience=2)
    for kl in ([1, 1, 1], [0.001, 1, 1], [0.001, 0.001, 1], [0.001, 0.001, 1], [0.001, 0.001, 1]):
        feed(monitor, [float(v) for v in kl])
        monitor.end_epoch()
    assert [(e.epoch, e.dims) for e in monitor.warnings_issued] == [(4, [0, 1])]
    # a collapse that keeps spreading is not held back more than `patience` epochs; later dimensions get
    # one more warning of their own
    spreading = CollapseMonitor(warn=False, patience=2)
    for kl in ([1, 1, 1], [0.001, 1, 1], [0.001, 0.001, 1], [0.001] * 3, [0.001] * 3, [0.001] * 3):
        feed(spreading, [float(v) for v in kl])
        spreading.end_epoch()
    assert [(e.epoch, e.dims, e.new_dims) for e in spreading.warnings_issued] == [(4, [0, 1], [0, 1]),
                                                                                  (5, [0, 1, 2], [2])]
    # the causes are spelled out in the first warning; the next one, with the same causes, refers to it
    first, second = spreading.warnings_issued
    assert first.explanations and "\n  - " in first.message
    assert [e.cause for e in second.explanations] == [e.cause for e in first.explanations]
    assert "\n" not in second.message and second.message.endswith("same causes as at epoch 4")


# -- explanations ------------------------------------------------------------------------------------------
def causes(explanations: list[Explanation]) -> list[str]:
    return [e.cause for e in explanations]


@pytest.mark.parametrize("rho, expected", [(0.95, True), (0.2, False)])
def test_cvae_correlation_explanation(rho, expected):
    ds = load(f"correlated:rho={rho},d=8,n=4000,seed=3")
    moments = Moments.from_data(ds.x, ds.y)
    beta = 0.5          # E = (1 − ρ²)I: 0.0975 < β (every dimension collapses) for ρ = 0.95, 0.96 > β for ρ = 0.2
    found = explain_collapse([0, 1, 2, 3], 4, model_kind="cvae", moments=moments, hyper={"beta": beta}, linear=True)
    assert ("cvae_correlation" in causes(found)) is expected
    if expected:
        corr = found[causes(found).index("cvae_correlation")]
        assert corr.predicted["n_active_vae_on_y"] == 4 and corr.predicted["n_active"] == 0
        assert abs(corr.predicted["residual_fraction"] - (1 - rho**2)) < 0.05
        assert "x–y correlation leaves little for z" in corr.message
    else:
        assert causes(found) == ["not_predicted"]          # the theory keeps every dimension: β is not the cause


def test_hierarchy_learnable_sigma2_explanation(data):
    _, moments = data
    hyper = {"beta": [1.0, 2.0], "sigma1": 0.5, "latent_dims": [4, 4]}
    learnable = explain_collapse([0, 1], 4, model_kind="hvae", level="z2", moments=moments,
                                 hyper={**hyper, "sigma2": "learnable"}, linear=True)
    assert "learnable_sigma2" in causes(learnable)
    sigma = learnable[causes(learnable).index("learnable_sigma2")]
    # Theorem 3: no z₂ collapse once β₂ < β₁σ₁²/η_dec² (= 0.25) or β₁ ≥ β₂η_dec²/σ₁² (= 8)
    assert sigma.predicted["beta2_max"] == pytest.approx(0.25) and sigma.predicted["beta1_min"] == pytest.approx(8)
    assert "Theorem 5" in sigma.message
    fixed = explain_collapse([0, 1], 4, model_kind="hvae", level="z2", moments=moments,
                             hyper={**hyper, "sigma2": 0.8}, linear=True)
    assert "learnable_sigma2" not in causes(fixed)
    # the bottom level is not described by the closed forms: generic advice, no invented numbers
    bottom = explain_collapse([0], 4, model_kind="hvae", level="z1", moments=moments, hyper=hyper)
    assert causes(bottom) == ["generic"] and bottom[0].predicted == {}


def test_warmup_explanation_through_the_monitor():
    # 10 steps per epoch, 3 epochs: a 1000-step warm-up cannot end in a 30-step run
    monitor = CollapseMonitor(hyper={"beta": 1.0}, schedule=LinearWarmup(warmup_steps=1000), total_steps=30,
                              moments=Moments(xx=np.diag([4.0, 1.0, 0.25])), warn=False)
    for _ in range(3):
        for _ in range(10):
            feed(monitor, [0.001, 1.0, 1.0])
        monitor.end_epoch()
    explanations = monitor.warnings_issued[0].explanations
    warm = explanations[causes(explanations).index("warmup")]
    assert "longer than the run" in warm.message and warm.predicted["scale"] == pytest.approx(19 / 1000)
    # at 2% of β = 1 the theory keeps every dimension: β is not what collapsed dimension 0 so early
    early = explanations[causes(explanations).index("not_predicted")]
    assert "the weight in force: 2% of the final 1" in early.message and "linear-theory estimate" in early.message
    info = ScheduleInfo.from_schedule(LinearWarmup(warmup_steps=100), total_steps=400, step=51)
    assert info.scale == pytest.approx(0.5) and info.warmup_steps == 100
    mid = explain_collapse([0], 3, hyper={"beta": 1.0}, schedule=info)
    assert "still ramping" in mid[causes(mid).index("warmup")].message


def test_plain_loop_without_data_names_dims_with_generic_advice():
    monitor = CollapseMonitor(hyper={"beta": 4.0}, loss_reduction="mean", n_features=784)
    feed(monitor, [0.001, 1.0, 0.0001, 2.0])
    monitor.end_epoch()
    feed(monitor, [0.001, 1.0, 0.0001, 2.0])
    with pytest.warns(CollapseWarning) as record:
        monitor.end_epoch()                                              # the second epoch confirms it
    warning = record[0].message
    assert warning.dims == [0, 2] and "2 of 4 dimensions collapsed" in str(warning) and ": 0, 2" in str(warning)
    assert causes(warning.explanations) == ["loss_reduction", "generic"]
    assert "β·D" in str(warning) and "3.14e+03" in str(warning)         # β·D = 4·784 = 3136
    assert "keeps" not in str(warning)                                   # no predicted numbers without data


def test_the_issue_example_phrasing():
    # 16 latent dimensions, a spectrum that supports 4 at β = 2: "β ≤ … keeps … (predicted)"
    eigs = np.r_[[12.0, 8.0, 5.0, 3.0], np.geomspace(1.5, 0.05, 12)]
    found = explain_collapse(list(range(12)), 16, moments=Moments(xx=np.diag(eigs)), hyper={"beta": 2.0})
    beta = found[causes(found).index("beta")]
    assert "with β = 2 and η_dec = 1 the data's spectrum supports 4 of 16" in beta.message
    assert "linear-theory estimate" in beta.message                      # not a linear model
    assert beta.prescription.startswith(f"β ≤ {beta.predicted['beta']:.3g} keeps {beta.predicted['n_active']} of 16")
    assert beta.predicted["n_active"] > 4 and beta.predicted["beta"] >= 2.0 / 100
    assert "η_dec to ≤" in beta.prescription
    json.dumps([e.to_dict() for e in found])                             # JSON-ready


def test_bad_input_is_named():
    with pytest.raises(ParameterError, match="collapsed"):
        explain_collapse([7], 4)
    with pytest.raises(ParameterError, match="model_kind"):
        explain_collapse([0], 4, model_kind="gan")
    with pytest.raises(ParameterError, match="beta"):
        CollapseMonitor(hyper={"beta": -1})
    with pytest.raises(ParameterError, match="patience"):
        CollapseMonitor(patience=0)
    with pytest.raises(ParameterError, match="same shape"):
        CollapseMonitor().update(torch.zeros(3, 2), torch.zeros(3, 4))


# -- the numbers the monitor measures -------------------------------------------------------------------------
def test_kl_equals_the_objectives_on_the_same_batches(data):
    x, _ = data
    torch.manual_seed(1)
    model = build_model("vae", "linear", x_dim=6, latent_dims=[LATENT])
    objective = build_objective("elbo", beta=1.0)
    by_update, by_output = CollapseMonitor(), CollapseMonitor()
    with torch.no_grad():
        for start in range(0, x.shape[0], 300):                          # uneven last batch (200 rows)
            batch = x[start:start + 300]
            by_update.update(*model.encoder(batch))
            by_output.update_output(model(batch))
    reference = evaluate(model, objective, TrainingData(x=x), batch_size=300)["kl_per_dim"][0]
    for monitor in (by_update, by_output):
        stats = monitor.end_epoch()["z"]
        assert stats["examples"] == x.shape[0]
        np.testing.assert_allclose(stats["kl_per_dim"], reference, rtol=1e-5)


def test_hierarchy_lower_level_uses_the_paired_estimate(data):
    x, _ = data
    torch.manual_seed(2)
    model = build_model("hvae", "linear", x_dim=6, latent_dims=[4, 3], sigma1=0.5)
    monitor = CollapseMonitor()
    paired, analytic = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], 500):
            output = model(x[start:start + 500], n_samples=16)
            monitor.update_output(output)
            bottom = output.levels[0]
            paired.append(kl_per_dimension(bottom, paired=True).mean((0, 1)))
            analytic.append(kl_per_dimension(bottom, paired=False).mean((0, 1)))
    stats = monitor.end_epoch()
    assert list(stats) == ["z1", "z2"] and monitor.epoch_metrics()["mutual_info_minibatch"][1] is None
    np.testing.assert_allclose(stats["z1"]["kl_per_dim"], torch.stack(paired).mean(0).numpy(), rtol=1e-5, atol=1e-6)
    # the analytic KL at the sampled z₂ is a different (biased) quantity: the monitor must not report it
    assert not np.allclose(stats["z1"]["kl_per_dim"], torch.stack(analytic).mean(0).numpy(), rtol=1e-3)
    assert monitor._kind() == "hvae"


def test_active_units_and_minibatch_mi():
    torch.manual_seed(3)
    monitor = CollapseMonitor(warn=False)
    informative = torch.randn(4000, 1) * 3.0          # posterior means spread over examples, small variance
    for chunk in informative.split(500):
        mu = torch.cat([chunk, torch.zeros_like(chunk)], dim=1)           # dimension 1 equals the prior
        log_var = torch.tensor([math.log(0.01), 0.0]).expand_as(mu)
        monitor.update(mu, log_var)
    stats = monitor.end_epoch()["z"]
    assert stats["active_units"] == 1 and stats["collapsed"] == [1]
    np.testing.assert_allclose(stats["mean_variance"][0], informative.var(unbiased=False).item(), rtol=1e-4)
    # z = μ + 0.1ε with μ ~ N(0, 9): I(x; z) = ½·log(1 + 9/0.01) = 3.40 nats; the estimate on the kept batch of
    # 256 (mi_examples) is bounded by log 256 = 5.55 and close to the truth here
    assert stats["mutual_info_ceiling"] == pytest.approx(math.log(256))
    assert abs(stats["mutual_info_minibatch"] - 0.5 * math.log(1 + 9 / 0.01)) < 0.3


def test_sums_reduce_across_processes_like_one_process(data):
    x, _ = data
    torch.manual_seed(4)
    model = build_model("vae", "linear", x_dim=6, latent_dims=[LATENT])
    everything, rank0, rank1 = CollapseMonitor(), CollapseMonitor(), CollapseMonitor()
    with torch.no_grad():
        for index, start in enumerate(range(0, x.shape[0], 250)):
            mu, log_var = model.encoder(x[start:start + 250] + 10.0)      # means far from 0: the shift matters
            everything.update(mu, log_var)
            (rank0 if index % 2 == 0 else rank1).update(mu, log_var)
    other = rank1.raw_sums()["z"]
    reduced = rank0.end_epoch(reduce=lambda t: t + other)["z"]
    single = everything.end_epoch()["z"]
    for key in ("kl_per_dim", "mean_variance"):
        np.testing.assert_allclose(reduced[key], single[key], rtol=1e-5)
    assert reduced["examples"] == single["examples"] == x.shape[0]


def test_the_monitor_does_not_draw_from_the_global_generator():
    monitor = CollapseMonitor()
    feed(monitor, [0.5, 1.0], rows=64)
    state = torch.get_rng_state()
    monitor.end_epoch()
    assert torch.equal(state, torch.get_rng_state())


def test_epoch_metrics_for_the_trainer_record(data):
    x, _ = data
    model = build_model("hvae", "linear", x_dim=6, latent_dims=[4, 3])
    monitor = CollapseMonitor(warn=False)
    with torch.no_grad():
        monitor.observe(model(x[:500]))
    monitor.end_epoch()
    metrics = monitor.epoch_metrics()
    assert set(metrics) == {"n_active", "active_units", "mutual_info_minibatch", "mutual_info_ceiling",
                            "collapsed_dims", "collapse_warnings", "forecast"}
    assert metrics["forecast"] is None           # no total_epochs: nothing to forecast towards
    assert len(metrics["active_units"]) == 2 and len(metrics["collapsed_dims"]) == 2
    # the headline count on the epoch's batches: the dimensions not listed as collapsed
    assert [n + len(c) for n, c in zip(metrics["n_active"], metrics["collapsed_dims"])] == [4, 3]
    json.dumps(metrics)
    json.dumps(monitor.state_dict())


def test_from_config_reads_the_run_settings():
    from collapsekit.training import RunConfig, load_training_data

    def config(**model):
        return RunConfig.parse({"data": {"spec": "gaussian:eigs=9:4:1:0.25,n=500,seed=1,exact=1"},
                                "model": {"kind": "hvae", "arch": "linear", "latent_dims": [4, 4], **model},
                                "objective": {"beta": [1.0, 2.0]},
                                "schedule": {"name": "linear", "settings": {"warmup_steps": 10}},
                                "train": {"epochs": 5, "batch_size": 100, "progress": False}})

    cfg = config()
    monitor = CollapseMonitor.from_config(cfg, load_training_data(cfg), total_steps=25)
    assert monitor.moments is not None and monitor.moments.d_x == 4 and monitor.linear
    assert monitor.hyper["beta"] == [1.0, 2.0] and monitor.hyper["sigma2"] == "learnable"
    monitor.step = 25                                                    # after the warm-up
    found = monitor.explain([0, 1], "z2", 4)
    assert {"learnable_sigma2", "beta"} <= set(causes(found)) and "warmup" not in causes(found)
    bernoulli = config(arch="mlp", likelihood="bernoulli")
    assert CollapseMonitor.from_config(bernoulli, load_training_data(bernoulli)).moments is None


# -- Lightning -------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::FutureWarning")    # Lightning's own deprecation notices
def test_lightning_callback_logs_and_warns():
    pl = pytest.importorskip("lightning.pytorch")
    from collapsekit.training.monitor import LightningCollapseMonitor

    ds = load("gaussian:eigs=9:4:1,n=1000,seed=5,exact=1")
    x = torch.as_tensor(ds.x, dtype=torch.float32)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.vae = build_model("vae", "linear", x_dim=3, latent_dims=[3])
            self.objective = build_objective("elbo", beta=20.0)          # above every eigenvalue: all collapse

        def training_step(self, batch, batch_idx):
            output = self.vae(batch[0])
            posterior = output.levels[0].posterior
            return {"loss": self.objective(output).loss, "mu": posterior.loc,
                    "log_var": 2 * posterior.scale.log().expand_as(posterior.loc)}

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=50, shuffle=True)
    callback = LightningCollapseMonitor(patience=1, moments=Moments.from_data(ds.x), hyper={"beta": 20.0},
                                        linear=True)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", enable_progress_bar=False, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, callbacks=[callback])
    with pytest.warns(CollapseWarning) as record:
        trainer.fit(Module(), loader)
    warned = [w.message for w in record if issubclass(w.category, CollapseWarning)]
    assert warned and warned[-1].dims == [0, 1, 2]
    assert trainer.callback_metrics["collapse/z/n_collapsed"] == 3
    assert trainer.callback_metrics["collapse/z/active_units"] == 0
    assert callback.monitor.epoch == 3 and callback.monitor.step == trainer.global_step
    assert "collapse/z/kl" in trainer.callback_metrics


def test_missing_lightning_gives_the_install_command(monkeypatch):
    import sys

    import collapsekit.training.monitor as package
    import collapsekit.training.monitor.callback as module              # where the class is cached

    monkeypatch.setattr(module, "_LIGHTNING_CLASS", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)          # import fails as if not installed
    with pytest.raises(ImportError, match="pip install"):
        package.lightning_callback()
    with pytest.raises(ImportError, match="pip install"):
        package.LightningCollapseMonitor        # noqa: B018 (the documented import path)


def test_beta_zero_is_a_plain_autoencoder_and_prescribes_nothing_from_the_theory():
    """At β = 0 the theory does not apply: the monitor still names the unused dimensions, never "lower β"."""
    from collapsekit.training import RunConfig

    config = RunConfig.parse({"objective": {"beta": 0.0}, "model": {"latent_dims": [4]}})
    monitor = CollapseMonitor.from_config(config, np.random.default_rng(0).standard_normal((50, 6)))
    assert monitor.moments is None                                       # no closed form at β = 0
    for _ in range(2):
        feed(monitor, [0.001, 1.0, 0.0001, 2.0])
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            monitor.end_epoch()
    warning = record[0].message
    assert warning.dims == [0, 2] and causes(warning.explanations) == ["generic"]
    assert "plain autoencoder" in str(warning) and "does not apply" in str(warning)
    assert "lower β" not in str(warning) and "β ≤" not in str(warning) and "keeps" not in str(warning)
