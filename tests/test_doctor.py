"""collapsekit.doctor (issue 12 §2): each check fails (or warns) on a model with its defect planted and passes a
healthy one — small VAEs trained briefly here — and the doctor leaves the model, optimiser and random states as
it found them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import collapsekit
from collapsekit.checkup import CHECKS, doctor
from collapsekit.errors import DataError, ParameterError
from collapsekit.objectives import LinearWarmup
from collapsekit.training.monitor import CollapseMonitor
from collapsekit.models import MLPEncoder
from doctor_models import (DIGITS, AutoregressiveDecoder, BlindDecoder, DetachedEncoder, elbo, linear_data,
                           linear_vae, mlp_vae, pair_elbo, squared_error, train)


@pytest.fixture(scope="module")
def healthy():
    """An MLP VAE (Bernoulli, d = 4) trained with the ELBO, and its Adam optimiser (with state)."""
    model = mlp_vae()
    return model, train(model, elbo())


def statuses(report):
    return {c.name: c.status for c in report.checks}


# -- effective β ---------------------------------------------------------------------------------------
def test_effective_beta_is_one_for_the_elbo_and_the_given_beta_for_a_beta_vae(healthy):
    model, optimizer = healthy
    check = doctor(model, DIGITS, elbo(), optimizer, checks=["effective_beta"])["effective_beta"]
    assert check.status == "ok" and check.evidence["effective_beta"] == pytest.approx(1.0, rel=0.02)
    check = doctor(model, DIGITS, elbo(4.0), checks=["effective_beta"], beta=4.0)["effective_beta"]
    assert check.status == "ok" and check.evidence["effective_beta"] == pytest.approx(4.0, rel=0.02)


def test_a_reconstruction_averaged_over_features_is_a_beta_times_d_model(healthy):
    model, _ = healthy
    check = doctor(model, DIGITS, elbo(recon="mean"), checks=["effective_beta"])["effective_beta"]
    assert check.status == "fail" and check.evidence["effective_beta"] == pytest.approx(64, rel=0.02)
    assert "averaged over the D = 64 features" in check.message and "β = 64" in check.message


def test_a_kl_averaged_over_latents_and_a_kl_never_applied_fail(healthy):
    model, _ = healthy
    check = doctor(model, DIGITS, elbo(kl="mean"), checks=["effective_beta"])["effective_beta"]
    assert check.status == "fail" and check.evidence["effective_beta"] == pytest.approx(0.25, rel=0.02)
    assert "averaged over the d = 4 latent dimensions" in check.message
    check = doctor(model, DIGITS, elbo(0.0), checks=["effective_beta"], beta=1.0)["effective_beta"]
    assert check.status == "fail" and "never applied" in check.message
    assert abs(check.evidence["effective_beta"]) < 1e-3


def test_a_squared_error_against_a_gaussian_decoder_is_half_the_beta():
    model = mlp_vae(gaussian=True)
    train(model, elbo(), steps=60)
    check = doctor(model, DIGITS, squared_error(), checks=["effective_beta"])["effective_beta"]
    assert check.status == "fail" and check.evidence["effective_beta"] == pytest.approx(0.5, rel=0.02)
    assert check.evidence["recon_weight"] == pytest.approx(2.0, rel=0.02)
    check = doctor(model, DIGITS, elbo(), checks=["effective_beta"])["effective_beta"]
    assert check.status == "ok"


# -- decoder uses z --------------------------------------------------------------------------------------
def test_a_decoder_that_ignores_z_fails_and_a_healthy_one_passes(healthy):
    model, _ = healthy
    check = doctor(model, DIGITS, checks=["decoder_uses_z"])["decoder_uses_z"]
    assert check.status == "ok" and check.evidence["gain_nats"] > 1.0
    assert len(check.evidence["gain_per_unit"]) == 4 and max(check.evidence["gain_per_unit"]) > 0.1
    blind = mlp_vae(decoder=BlindDecoder(4))
    train(blind, elbo(), steps=60)
    check = doctor(blind, DIGITS, checks=["decoder_uses_z"])["decoder_uses_z"]
    assert check.status == "fail" and abs(check.evidence["gain_nats"]) < 1e-4
    assert "does not depend on z at all" in check.message
    assert max(abs(g) for g in check.evidence["gain_per_unit"]) < 1e-4


# -- encoder is training ---------------------------------------------------------------------------------
def test_a_latent_dimension_that_pays_kl_but_is_never_read_warns(healthy):
    model, _ = healthy
    unread = mlp_vae()
    unread.load_state_dict(model.state_dict())
    with torch.no_grad():
        unread.decoder.net[0].weight[:, 2] = 0.0               # dimension 2 no longer reaches the decoder
    check = doctor(unread, DIGITS, checks=["decoder_uses_z"])["decoder_uses_z"]
    assert check.status == "warn" and check.evidence["unread_units"] == [2]
    assert check.evidence["kl_per_unit"][2] >= 0.1 and abs(check.evidence["gain_per_unit"][2]) < 1e-6


def test_an_encoder_head_left_out_of_the_optimiser_fails(healthy):
    model, optimizer = healthy
    assert doctor(model, DIGITS, elbo(), optimizer, checks=["encoder_training"])["encoder_training"].status == "ok"
    frozen = mlp_vae()
    without_head = train(frozen, elbo(), steps=60,
                         params=lambda m: [p for n, p in m.named_parameters() if "head.mean" not in n])
    check = doctor(frozen, DIGITS, elbo(), without_head, checks=["encoder_training"])["encoder_training"]
    assert check.status == "fail" and "not in the optimiser" in check.message
    assert set(check.evidence["not_in_optimizer"]) == {"encoder.head.mean.weight", "encoder.head.mean.bias"}


def test_a_detached_encoder_mean_fails_with_or_without_the_optimiser(healthy):
    model = mlp_vae(encoder=DetachedEncoder(4))
    optimizer = train(model, elbo(), steps=30)
    check = doctor(model, DIGITS, elbo(), optimizer, checks=["encoder_training"])["encoder_training"]
    assert check.status == "fail" and "no gradient" in check.message
    check = doctor(model, DIGITS, elbo(), checks=["encoder_training"])["encoder_training"]
    assert check.status == "fail" and "no gradient" in check.message
    check = doctor(healthy[0], DIGITS, elbo(), checks=["encoder_training"])["encoder_training"]
    assert check.status == "ok" and "pass optimizer" in check.message


def test_means_equal_for_every_example_fail():
    model = mlp_vae()
    with torch.no_grad():
        model.encoder.head.mean.weight.zero_()                  # means: the bias, whatever the input
    check = doctor(model, DIGITS, checks=["encoder_training"])["encoder_training"]
    assert check.status == "fail" and "same for every example" in check.message


# -- schedule vs run ---------------------------------------------------------------------------------------
def test_a_warmup_longer_than_the_run_fails_and_a_short_one_passes(healthy):
    model, _ = healthy
    long = doctor(model, DIGITS, schedule=LinearWarmup(warmup_steps=1000), total_steps=500, checks=["schedule"])
    assert long["schedule"].status == "fail" and "longer than the run" in long["schedule"].message
    short = doctor(model, DIGITS, schedule=LinearWarmup(warmup_steps=100), total_steps=1000, checks=["schedule"])
    assert short["schedule"].status == "ok"
    monitor = CollapseMonitor(schedule=LinearWarmup(warmup_steps=800), total_steps=600)
    assert doctor(model, DIGITS, schedule=monitor, checks=["schedule"])["schedule"].status == "fail"
    late = doctor(model, DIGITS, schedule={"warmup_steps": 700}, total_steps=1000, checks=["schedule"])
    assert late["schedule"].status == "warn"


# -- under-regularised latents --------------------------------------------------------------------------------
def test_a_kl_weight_of_1e_6_leaves_the_latents_under_regularised(healthy):
    model, _ = healthy
    check = doctor(model, DIGITS, checks=["regularisation"])["regularisation"]
    assert check.status == "ok" and check.evidence["moment_kl"] < 0.5
    loose = mlp_vae()
    train(loose, elbo(1e-6), steps=300)
    check = doctor(loose, DIGITS, checks=["regularisation"])["regularisation"]
    assert check.status == "fail" and "under-regularised" in check.message
    assert check.evidence["moment_kl"] > 4 * 2.0


# -- theory ------------------------------------------------------------------------------------------------------
def test_the_closed_form_count_matches_a_converged_linear_vae_and_not_an_unconverged_one():
    x = linear_data()
    converged = linear_vae()
    train(converged, elbo(), steps=3000, lr=1e-2, data=x, batch=512)
    report = doctor(converged, x, elbo(), checks=["effective_beta", "theory"])
    check = report["theory"]
    assert check.status == "ok" and check.evidence["exact"]
    assert check.evidence["predicted_active"] == check.evidence["measured_active"] == 2
    early = linear_vae()
    train(early, elbo(), steps=5, lr=1e-2, data=x, batch=512)
    check = doctor(early, x, elbo(), checks=["effective_beta", "theory"])["theory"]
    assert check.status == "warn" and check.evidence["measured_active"] != check.evidence["predicted_active"]


def test_the_theory_is_skipped_with_its_reason_for_a_bernoulli_model(healthy):
    model, _ = healthy
    report = doctor(model, DIGITS, checks=["theory"])
    assert not report.checks and "Gaussian likelihood" in report.skipped[0].reason


# -- leaving things as found ------------------------------------------------------------------------------------
def _snapshot(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {id(p): None if p.grad is None else p.grad.clone() for p in model.parameters()},
            [m.training for m in model.modules()],
            {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in s.items()}
             for k, s in optimizer.state_dict()["state"].items()},
            optimizer.state_dict()["param_groups"],
            torch.get_rng_state().clone(), np.random.get_state(), random.getstate())


def _same(a, b):
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_the_doctor_leaves_model_optimiser_and_random_states_bit_identical(healthy):
    model, optimizer = healthy
    model.train()
    model.decoder.eval()                                        # a mixed state, kept as it is
    loss = elbo()(model, DIGITS[:64])
    loss.backward()                                             # gradients the user has not stepped yet
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(5)
    loader = DataLoader(TensorDataset(DIGITS), batch_size=100, shuffle=True)
    before = _snapshot(model, optimizer)
    report = doctor(model, loader, lambda m, batch: elbo()(m, batch[0]), optimizer,
                    schedule=LinearWarmup(warmup_steps=10), total_steps=100)
    after = _snapshot(model, optimizer)
    assert {c.name for c in report.checks} == {"effective_beta", "decoder_uses_z", "encoder_training", "schedule",
                                               "regularisation"}
    assert [c.name for c in report.checks] == [n for n in CHECKS if n in statuses(report)]
    assert report["encoder_training"].evidence["mean_change"] > 0      # a step was taken — on the copy
    for i, (x, y) in enumerate(zip(before, after)):
        assert _same(x, y), f"item {i} of the snapshot changed"
    model.zero_grad(set_to_none=True)
    model.eval()


# -- the API ---------------------------------------------------------------------------------------------------
def test_collapsekit_doctor_is_the_function_also_after_its_package_is_imported(healthy):
    model, _ = healthy
    import collapsekit.checkup.api  # noqa: F401  — binds collapsekit.checkup, never collapsekit.doctor

    report = collapsekit.doctor(model, DIGITS, checks=["decoder_uses_z"])
    assert statuses(report) == {"decoder_uses_z": "ok"}
    assert report.to_dict()["checks"][0].keys() >= {"name", "status", "message", "fix"}


def test_bad_arguments_are_one_line_errors(healthy):
    model, _ = healthy
    with pytest.raises(ParameterError, match="unknown check"):
        doctor(model, DIGITS, checks=["nope"])
    with pytest.raises(ParameterError, match="loss_fn must return a scalar"):
        doctor(model, DIGITS, lambda m, b: torch.zeros(3), checks=["effective_beta"])
    with pytest.raises(DataError, match="no batch"):
        doctor(model, [], checks=["decoder_uses_z"])
    with pytest.raises(ParameterError, match="no adapter"):
        doctor(object(), DIGITS)


# -- docs/doctor.md ----------------------------------------------------------------------------------------------
def test_the_example_of_docs_doctor_md_runs_and_catches_its_bug(capsys):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "doctor.md").read_text(encoding="utf-8")
    example = text.split("## Example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(example, "docs/doctor.md", "exec"), namespace)  # noqa: S102 — the doc's own example
    report = namespace["report"]
    assert report["effective_beta"].status == "fail"
    assert report["effective_beta"].evidence["effective_beta"] == pytest.approx(64, rel=0.02)
    out = capsys.readouterr().out
    assert "fail  effective_beta: the loss weighs the KL by β_eff = 64" in out
    assert "averaged over the D = 64 features" in out
    # its consequence: a collapse (the decoder is connected, z carries nothing), told apart from a wiring bug
    check = report["decoder_uses_z"]
    assert check.status == "fail" and "a posterior collapse, not a wiring bug" in check.message


def test_a_pair_of_callables_and_dict_batches_of_a_dataloader(healthy):
    """The doctor reaches a model given as (encoder, decoder) through the adapters, on a loader of dict batches."""
    model, _ = healthy

    class Decoder(torch.nn.Module):                            # z → Distribution, as the pair adapter wants
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, z):
            return self.vae.likelihood(self.vae.decoder(z))

    pair = (model.encoder, Decoder(model))

    def loss_fn(pair, batch):
        encoder, decoder = pair
        mu, log_var = encoder(batch["image"])
        q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
        z = q.rsample()
        kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1).mean()
        return -decoder(z).log_prob(batch["image"]).mean() + 3.0 * kl

    loader = DataLoader([{"image": row} for row in DIGITS], batch_size=64)
    report = doctor(pair, loader, loss_fn, checks=["effective_beta", "decoder_uses_z"], beta=3.0)
    assert statuses(report) == {"effective_beta": "ok", "decoder_uses_z": "ok"}
    assert report["effective_beta"].evidence["effective_beta"] == pytest.approx(3.0, rel=0.02)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_cuda_model_the_checks_run_there_and_the_cuda_random_state_is_kept():
    model = mlp_vae().cuda()
    data = DIGITS.cuda()
    optimizer = train(model, elbo(), steps=30, data=data)
    torch.cuda.manual_seed(11)
    cuda_state = torch.cuda.get_rng_state()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    report = doctor(model, data, elbo(), optimizer)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    assert "on cuda" in " ".join(report.notes) and report["effective_beta"].status == "ok"


def test_an_autoregressive_decoder_is_judged_by_log_likelihoods_alone():
    """A teacher-forced decoder with no mean: the gain of the own z is measured all the same; severing z fails."""
    results = {}
    for use_z in (True, False):
        torch.manual_seed(0)
        pair = (MLPEncoder(64, 4, hidden=(32,)), AutoregressiveDecoder(4, use_z=use_z))
        train(pair, pair_elbo, steps=150, params=lambda p: list(p[0].parameters()) + list(p[1].parameters()))
        results[use_z] = doctor(pair, DIGITS, pair_elbo, checks=["effective_beta", "decoder_uses_z"])
    healthy, severed = results[True], results[False]
    assert statuses(healthy) == {"effective_beta": "ok", "decoder_uses_z": "ok"}
    assert healthy["decoder_uses_z"].evidence["gain_nats"] > 1.0 and "share_explained" not in \
        healthy["decoder_uses_z"].evidence
    assert severed["decoder_uses_z"].status == "fail" and abs(severed["decoder_uses_z"].evidence["gain_nats"]) < 1e-4
