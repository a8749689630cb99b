"""The adapter protocol (issue 12): dispatch, and the built-in adapters against the models they wrap."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

from collapsekit.adapters import (CVAEAdapter, FunctionAdapter, ModelAdapter, VAEAdapter, adapter_names, as_adapter,
                                  batch_inputs, likelihood_target, register_adapter, unregister_adapter)
from collapsekit.errors import DataError, ParameterError
from collapsekit.models import build_model


def _vae():
    torch.manual_seed(0)
    return build_model("vae", "mlp", x_dim=6, latent_dims=[3], eta_dec=0.5, eta_enc=0.7)


def test_the_vae_adapter_gives_the_models_own_posterior_and_likelihood():
    """q(z|x) and log p(x|z) through the adapter equal those of the model's forward pass at the same z."""
    model, x = _vae(), torch.randn(5, 6)
    adapter = as_adapter(model)
    assert isinstance(adapter, VAEAdapter) and isinstance(adapter, ModelAdapter)
    assert adapter.prior_std == pytest.approx(0.7) and adapter.beta is None
    out = model(x, n_samples=4)
    q = adapter.posterior(adapter.inputs((x, torch.zeros(5))))
    torch.testing.assert_close(q.loc, out.levels[0].posterior.loc)
    torch.testing.assert_close(q.scale, out.levels[0].posterior.scale)
    z = out.levels[0].sample                                         # (4, 5, 3)
    mine = adapter.decode(z.reshape(20, 3)).log_prob(x.repeat(4, 1)).reshape(4, 5)
    torch.testing.assert_close(mine, out.likelihood.log_prob(out.target))
    assert as_adapter(model, beta=2.0).beta == 2.0


def test_the_cvae_adapter_scores_y_given_x():
    torch.manual_seed(1)
    model = build_model("cvae", "linear", x_dim=4, y_dim=3, latent_dims=[2], eta_dec=0.5)
    x, y = torch.randn(6, 4), torch.randn(6, 3)
    adapter = as_adapter(model)
    assert isinstance(adapter, CVAEAdapter)
    xy = adapter.inputs((x, y))
    out = model(x, y, n_samples=2)
    q = adapter.posterior(xy)
    torch.testing.assert_close(q.loc, out.levels[0].posterior.loc)
    z = out.levels[0].sample.reshape(12, 2)
    torch.testing.assert_close(adapter.decode(z).log_prob(likelihood_target(adapter, xy).repeat(2, 1)).reshape(2, 6),
                               out.likelihood.log_prob(out.target))
    with pytest.raises(DataError, match="batch must be"):
        adapter.inputs(x)


def test_a_pair_of_callables_is_an_adapter():
    w = torch.randn(6, 2)
    encoder = lambda x: (x @ w, torch.full((x.shape[0], 2), -1.0))                        # noqa: E731
    decoder = lambda z: Independent(Normal(z @ w.T, 0.5), 1)                              # noqa: E731
    adapter = as_adapter((encoder, decoder), prior_std=2.0)
    assert isinstance(adapter, FunctionAdapter) and adapter.prior_std == 2.0
    x = torch.randn(3, 6)
    q = adapter.posterior(x)
    torch.testing.assert_close(q.scale, torch.full((3, 2), float(torch.exp(torch.tensor(-0.5)))))
    assert adapter.decode(q.loc).log_prob(x).shape == (3,)
    assert as_adapter((encoder, None)).decode(q.loc) is None
    with pytest.raises(ParameterError, match=r"must return \(mu, log_var\)"):
        as_adapter((lambda x: x, None)).posterior(x)
    with pytest.raises(ParameterError, match="must return a torch.distributions.Distribution"):
        as_adapter((encoder, lambda z: z)).decode(q.loc)


def test_dispatch_returns_adapters_as_they_are_and_names_the_families_for_anything_else():
    adapter = as_adapter(_vae())
    assert as_adapter(adapter) is adapter
    with pytest.raises(ParameterError, match="is already an adapter"):
        as_adapter(adapter, beta=1.0)
    with pytest.raises(ParameterError, match="use.*diagnose_model|diagnose it with .*diagnose_model"):
        as_adapter(build_model("hvae", "mlp", x_dim=6, latent_dims=[3, 2]))
    with pytest.raises(ParameterError) as info:
        as_adapter(object())
    message = str(info.value)
    assert "\n" not in message and "no adapter for a builtins.object" in message
    assert all(name in message for name in adapter_names())


def test_a_registered_family_is_used_before_the_built_in_ones_and_can_be_removed():
    class Mine:
        def __init__(self, model, **options):
            self.model, self.name, self.prior_std, self.beta, self.notes = model, "mine", 1.0, None, []

        def modules(self):
            return []

        def inputs(self, batch):
            return batch_inputs(batch)

        def posterior(self, x):
            return Normal(x, torch.ones_like(x))

        def decode(self, z):
            return None

    model = _vae()
    register_adapter("mine", lambda m: getattr(m, "mine", False), Mine)
    try:
        model.mine = True
        assert isinstance(as_adapter(model), Mine) and adapter_names()[0] == "mine"
    finally:
        unregister_adapter("mine")
    assert isinstance(as_adapter(model), VAEAdapter) and "mine" not in adapter_names()


def test_batches_as_loaders_yield_them():
    x = torch.randn(4, 2)
    for batch in (x, x.numpy(), (x, torch.zeros(4)), [x], {"pixel_values": x, "label": 1}):
        torch.testing.assert_close(batch_inputs(batch), x)
    with pytest.raises(DataError, match="without any of the keys"):
        batch_inputs({"label": x})
    with pytest.raises(DataError, match="cannot read inputs"):
        batch_inputs(3.0)


def test_a_cvae_is_diagnosed_from_a_paired_dataset_like_diagnose_model():
    """The streamed adapter path on (x, y) batches and diagnose_model: the same posterior measures; the
    log p(y|x) from other samples agree within 4 standard errors (per-example differences)."""
    from collapsekit.data import Dataset
    from collapsekit.diagnostics import diagnose, diagnose_model

    torch.manual_seed(3)
    model = build_model("cvae", "mlp", x_dim=4, y_dim=3, latent_dims=[2], eta_dec=0.5)
    data = Dataset(x=torch.randn(200, 4).numpy(), y=torch.randn(200, 3).numpy())
    adapted = diagnose(model, data, n_samples=200)
    reference = diagnose_model(model, data, n_samples=200)
    torch.testing.assert_close(torch.tensor(adapted.kl_per_dim), torch.tensor(reference.kl_per_dim))
    difference = adapted.log_likelihood_per_example - reference.log_likelihood_per_example
    assert abs(difference.mean()) < 4 * difference.std(ddof=1) / len(difference) ** 0.5
    assert adapted.model["name"] == "collapsekit CVAE"
