"""Extending collapsekit from outside the package: a metric, a model family, an objective and a reproduction
preset, each registered from this test module, show up by themselves in the CLI's choices, in configuration
validation and in the reports (docs/architecture.md walks through the same four additions). Every
registration is undone after its test, and a fixture checks that the registries are as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from collapsekit.cli import build_parser
from collapsekit.cli import main as cli_main
from collapsekit.diagnostics import Metric, diagnose_model, register_metric, unregister_metric
from collapsekit.diagnostics.metric_registry import METRICS
from collapsekit.diagnostics.report import CollapseReport
from collapsekit.diagnostics.theory_compare import TheorySetting, compare_with_theory
from collapsekit.errors import ParameterError
from collapsekit.experiments.presets import PRESETS, register_preset, select, unregister_preset
from collapsekit.experiments.reproduction.outputs import Column, for_preset
from collapsekit.experiments.reproduction.preset import Preset
from collapsekit.experiments.reproduction.verdicts import Verdict
from collapsekit.models import MODEL_FAMILIES, VAE, LinearDecoder, LinearEncoder, ModelFamily, build_model
from collapsekit.models import register_model_family, unregister_model_family
from collapsekit.objectives import OBJECTIVES, BetaELBO, build_objective
from collapsekit.theory import Moments
from collapsekit.training import RunConfig
from collapsekit.viz.report import render_html, render_markdown

SPEC = "gaussian:eigs=9:4:1:0.25,n=256,exact=1"


# -- the four additions, as a user writes them ----------------------------------------------------------
def toy_kl_per_dim(stats):
    """A per-dimension metric with a known answer: E_x KL_j(x) is the report's own kl_per_dim."""
    return stats.kl.mean(axis=0)


TOY_METRIC = Metric("toy_kl", toy_kl_per_dim, title="toy KL per dimension", unit="nats",
                    description="the toy metric: the mean KL of each dimension, recomputed from the posterior pass.")


def build_toy(settings, likelihood):
    """A model family: a linear VAE built from collapsekit's public blocks."""
    d = settings.latent_dims[0]
    return VAE(LinearEncoder(settings.x_dim, d, std="learnable", init_std=settings.init_std),
               LinearDecoder(d, settings.x_dim), likelihood, eta_enc=settings.eta_enc)


TOY_FAMILY = ModelFamily("toyvae", build_toy, description="a linear VAE registered by a test")


class ToyELBO(BetaELBO):
    """An objective: the β-ELBO under a new name."""

    name = "toy"


def toy_runner(ctx):
    """A preset's runner: no training, one row and a verdict."""
    rows = [{"setting": "a", "n_active_measured": 2, "n_active_predicted": 2},
            {"setting": "b", "n_active_measured": 1, "n_active_predicted": None}]
    columns = [Column("setting", "setting"), Column("n_active_measured", "active dims measured"),
               Column("n_active_predicted", "active dims predicted")]
    return for_preset(ctx, data="none", rows=rows, columns=columns, verdict=Verdict(True, "toy evidence"),
                      settings={"toy": 1}, figure=None)


TOY_PRESET = Preset("toy-preset", "E0", "A toy experiment", "one row, no training", "the toy claim holds", 1,
                    runner=toy_runner)


# -- registration, undone after each test ---------------------------------------------------------------
@pytest.fixture
def toy_metric():
    before = dict(METRICS)
    register_metric(TOY_METRIC)
    try:
        yield TOY_METRIC
    finally:
        unregister_metric(TOY_METRIC.name)
    assert METRICS == before


@pytest.fixture
def toy_family():
    before = dict(MODEL_FAMILIES)
    register_model_family(TOY_FAMILY)
    try:
        yield TOY_FAMILY
    finally:
        unregister_model_family(TOY_FAMILY.kind)
    assert MODEL_FAMILIES == before


@pytest.fixture
def toy_objective(monkeypatch):
    before = dict(OBJECTIVES)
    with monkeypatch.context() as patch:          # the registry is a dict: one entry, removed on exit
        patch.setitem(OBJECTIVES, ToyELBO.name, ToyELBO)
        yield ToyELBO
    assert OBJECTIVES == before


@pytest.fixture
def toy_preset():
    before = dict(PRESETS)
    register_preset(TOY_PRESET)
    try:
        yield TOY_PRESET
    finally:
        unregister_preset(TOY_PRESET.name)
    assert PRESETS == before


def option(verb: str, flag: str):
    """The argparse action of ``collapsekit VERB FLAG``."""
    verbs = next(a for a in build_parser()._actions if a.dest == "verb")
    return next(a for a in verbs.choices[verb]._actions if flag in a.option_strings)


# -- a metric ---------------------------------------------------------------------------------------------
def test_a_registered_metric_is_measured_and_reported(toy_metric):
    torch.manual_seed(0)
    model = build_model("vae", "linear", x_dim=6, latent_dims=[3])
    x = torch.randn(200, 6)
    report = diagnose_model(model, x, n_samples=None)
    level = report.levels[0]
    assert np.allclose(level.metrics["toy_kl"], level.kl_per_dim, rtol=1e-12, atol=1e-15)

    markdown, page = render_markdown(report), render_html(report)
    for text in (markdown, page):
        assert "toy KL per dimension (nats) of z" in text
        assert "the toy metric: the mean KL of each dimension" in text      # the glossary
    saved = report.to_dict()
    assert saved["levels"][0]["metrics"]["toy_kl"] == pytest.approx(level.kl_per_dim)
    assert CollapseReport.from_dict(json.loads(json.dumps(saved))).levels[0].metrics == level.metrics

    with pytest.raises(ParameterError, match="already registered"):
        register_metric(TOY_METRIC)
    unregister_metric("toy_kl")
    plain = diagnose_model(model, x, n_samples=None)
    assert plain.levels[0].metrics == {} and "metrics" not in plain.to_dict()["levels"][0]
    assert "toy KL" not in render_markdown(plain)
    register_metric(TOY_METRIC)                      # the fixture removes it again


# -- a model family (and the metric, through a trained run) ---------------------------------------------
def test_a_registered_model_family_trains_and_is_diagnosed_from_the_cli(toy_family, toy_metric, tmp_path, capsys):
    assert "toyvae" in option("train", "--model").choices and "gan" not in option("train", "--model").choices
    assert RunConfig.parse({"model": {"kind": "toyvae", "arch": "linear", "latent_dims": [3]}}).model.kind == "toyvae"
    with pytest.raises(ParameterError, match="model.kind: must be one of vae, cvae, hvae, toyvae"):
        RunConfig.parse({"model": {"kind": "gan"}})
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    assert "model family: vae, cvae, hvae, toyvae" in " ".join(capsys.readouterr().out.split())

    run = tmp_path / "run"
    assert cli_main(["train", "--data", SPEC, "--model", "toyvae", "--arch", "linear", "--latent-dims", "3",
                     "--epochs", "2", "--batch-size", "64", "--no-progress", "--out", str(run)]) == 0
    assert RunConfig.load(run / "config.yaml").model.kind == "toyvae"
    capsys.readouterr()
    assert cli_main(["diagnose", str(run), "--samples", "8", "--out", str(tmp_path / "diagnosis")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "TOYVAE" in printed and "toy KL per dimension (nats)" in printed
    saved = json.loads((tmp_path / "diagnosis" / "report.json").read_text())
    assert saved["model"]["kind"] == "toyvae"
    assert saved["levels"][0]["metrics"]["toy_kl"] == pytest.approx(saved["levels"][0]["kl_per_dim"])
    assert any("no closed form describes a toyvae model" in note for note in saved["notes"])
    markdown = (tmp_path / "diagnosis" / "report.md").read_text()
    assert markdown.startswith("# Posterior-collapse report: TOYVAE") and "toy KL per dimension" in markdown


def test_a_registered_model_family_is_built_by_name_and_unknown_kinds_still_fail(toy_family):
    model = build_model("toyvae", "linear", x_dim=5, latent_dims=[2])
    assert isinstance(model, VAE) and model.config["kind"] == "toyvae"
    with pytest.raises(ParameterError, match="already registered"):
        register_model_family(TOY_FAMILY)
    with pytest.raises(ParameterError, match=r"kind must be one of \['vae', 'cvae', 'hvae', 'toyvae'\]"):
        build_model("gan", "linear", x_dim=5, latent_dims=[2])
    with pytest.raises(ParameterError, match="built-in"):
        unregister_model_family("vae")


def test_what_a_family_is_comes_from_the_registry_not_from_its_name():
    """A registered family with a closed form is predicted by that closed form; one marked hierarchical takes
    several latent levels; predict and verify name the built-in families' closed forms as the registry does."""
    from collapsekit.cli.theory_options import THEORY_NAMES
    from collapsekit.diagnostics.theory_compare import moments_for, predict_for, unsupported_reason
    from collapsekit.models.registry import MODEL_KINDS

    assert THEORY_NAMES == {kind: MODEL_FAMILIES[kind].closed_form for kind in MODEL_KINDS
                            if MODEL_FAMILIES[kind].closed_form is not None}
    moments = Moments.from_data(np.random.default_rng(0).standard_normal((200, 4)) * [3.0, 2.0, 1.0, 0.1])
    described = [ModelFamily("linvae", build_toy, closed_form="vae"),
                 ModelFamily("deepvae", MODEL_FAMILIES["hvae"].build, closed_form="mhvae", hierarchical=True)]
    for family in described:
        register_model_family(family)
    try:
        one = TheorySetting.from_config(RunConfig.parse({"model": {"kind": "linvae", "arch": "linear",
                                                                   "latent_dims": [3]}}))
        assert one.closed_form == "vae" and not one.conditional and unsupported_reason(one) is None
        (prediction, _), = predict_for(one, moments).values()
        assert prediction.model == "vae"
        assert moments_for(one, np.ones((5, 4)), np.ones((5, 2))).yy is None       # not conditional: x alone
        config = RunConfig.parse({"model": {"kind": "deepvae", "arch": "linear", "latent_dims": [3, 2]}})
        deep = TheorySetting.from_config(config)
        assert deep.closed_form == "mhvae" and list(predict_for(deep, moments)) == ["z1", "z2"]
        assert "two-level" in unsupported_reason(TheorySetting.from_config(
            config.with_overrides({"model.latent_dims": [3, 2, 2]})))
        with pytest.raises(ParameterError, match="one latent level"):
            RunConfig.parse({"model": {"kind": "linvae", "latent_dims": [3, 2]}})
        with pytest.raises(ParameterError, match="needs ≥ 2 levels"):
            RunConfig.parse({"model": {"kind": "deepvae", "latent_dims": [3]}})
    finally:
        for family in described:
            unregister_model_family(family.kind)


# -- an objective -----------------------------------------------------------------------------------------
def test_a_registered_objective_is_a_cli_choice_a_config_value_and_named_in_reports(toy_objective, capsys):
    assert "toy" in option("train", "--objective").choices
    args = build_parser().parse_args(["train", "--out", "run", "--objective", "toy"])
    assert getattr(args, "objective__name") == "toy"
    config = RunConfig.parse({"model": {"arch": "linear", "latent_dims": [2]}, "objective": {"name": "toy"}})
    assert config.objective.name == "toy"
    with pytest.raises(ParameterError, match="objective.name: must be one of elbo, iwae, infovae, toy"):
        RunConfig.parse({"objective": {"name": "nope"}})
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    assert "objective: elbo, iwae, infovae, toy" in " ".join(capsys.readouterr().out.split())
    assert isinstance(build_objective("toy", beta=0.5), ToyELBO)
    # ... and a run configured with it trains with it, its settings read from the configuration by name
    from collapsekit.training.trainer import build_objective_from_config
    objective, _ = build_objective_from_config(RunConfig.parse({"objective": {"name": "toy", "beta": 0.25}}))
    assert isinstance(objective, ToyELBO) and objective.beta == 0.25

    # The reports say that the closed forms (β-ELBO optima) do not describe a model trained with it.
    torch.manual_seed(0)
    x = torch.randn(100, 4)
    report = diagnose_model(build_model("vae", "linear", x_dim=4, latent_dims=[2]), x, n_samples=None)
    compare_with_theory(report, TheorySetting.from_config(config), Moments.from_data(x.double().numpy()))
    assert report.levels[0].theory is None
    assert "this model was trained with toy" in render_markdown(report)


# -- a reproduction preset --------------------------------------------------------------------------------
def test_a_registered_preset_is_listed_run_and_reported(toy_preset, tmp_path, capsys):
    assert select("all")[-1] is TOY_PRESET and select("toy-preset") == [TOY_PRESET]
    assert cli_main(["reproduce", "--list"]) == 0
    assert "toy-preset" in capsys.readouterr().out
    out, report = tmp_path / "toy", tmp_path / "report.md"
    assert cli_main(["reproduce", "toy-preset", "--out", str(out), "--report", str(report), "--no-progress"]) == 0
    saved = json.loads((out / "result.json").read_text())
    assert saved["preset"] == "toy-preset" and saved["verdict"]["verdict"] == "holds"
    table = (out / "table.md").read_text()
    assert "| b | 1 | — |" in table                      # a missing prediction, formatted as everywhere else
    combined = report.read_text()
    assert "## E0 · toy-preset: A toy experiment" in combined and "toy evidence" in combined
    with pytest.raises(ParameterError, match="already registered"):
        register_preset(TOY_PRESET)
    with pytest.raises(ParameterError, match="one word"):
        register_preset(Preset("all", "E0", "", "", "", 1, runner=toy_runner))


def test_registrations_are_undone():
    """Runs after the tests above in this module (and with any order, the fixtures assert it themselves)."""
    assert "toy_kl" not in METRICS and "toyvae" not in MODEL_FAMILIES
    assert "toy" not in OBJECTIVES and "toy-preset" not in PRESETS
    assert "toyvae" not in option("train", "--model").choices and "toy" not in option("train", "--objective").choices
    assert [p.paper_id for p in select("all")] == [f"E{i}" for i in range(1, 15)]
