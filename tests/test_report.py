"""The report renderers (no browser): Markdown, HTML, JSON, figures, terminal summary.

What is checked is that each renderer shows the numbers it is given (the banner's count is
sum(collapsed), predicted beside measured), that the HTML is self-contained, and that the image
figures do what they claim (reconstructions decode the posterior mean, a dimension the decoder
ignores gives a constant traversal row).
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch
from report_helpers import cvae_report, hierarchy_report, make_level, vae_report
from rich.console import Console

from collapsekit.data import load_digits, quadrant_merge, quadrant_split
from collapsekit.diagnostics.report import CollapseReport
from collapsekit.models import build_model
from collapsekit.cli.terminal import print_collapse_report
from collapsekit.viz.plots import (
    plot_activity_over_epochs,
    plot_kl_heatmap,
    plot_kl_per_dim,
    plot_reconstructions,
    plot_traversals,
    tile,
)
from collapsekit.viz.report import render_html, render_markdown, verdict, write_reports


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _images(html: str) -> list[str]:
    return re.findall(r'<img\b[^>]*>', html)


# -- numbers in the documents -------------------------------------------------------------------------
@pytest.mark.parametrize("make", [vae_report, hierarchy_report, cvae_report])
def test_verdict_counts_equal_collapsed_flags(make):
    report = make()
    html, markdown = render_html(report), render_markdown(report)
    banner = re.search(r'<div class="banner (bad|good)" role="status">(.*?)</div>', html, re.DOTALL)
    assert banner is not None
    for level in report.levels:
        expected = f"{sum(level.collapsed)} of {len(level.collapsed)} dimensions of {level.name} collapsed"
        assert verdict(level) == expected
        assert expected in banner.group(2)
        assert f"**{expected}**" in markdown
    assert banner.group(1) == ("bad" if any(any(lv.collapsed) for lv in report.levels) else "good")


def test_verdict_position_precedes_everything_else():
    html = render_html(vae_report())
    positions = [html.index(f'id="{name}"') for name in ("verdict", "explanations", "summary", "plots", "levels")
                 if f'id="{name}"' in html]
    assert positions == sorted(positions)


def test_predicted_beside_measured_with_label():
    report = vae_report()
    level = report.levels[0]
    html, markdown = render_html(report), render_markdown(report)
    line = "5 active dimensions predicted, 5 measured — agrees"
    assert line in html and line in markdown
    assert "Theory (exact" in html and "predicted KL (nats, exact)" in markdown
    # Rank by rank: the largest measured (dim 0, 2.1 nats) beside the largest predicted (2.3 nats).
    assert "| 1 | 0 | 2.1 | 2.3 | " in markdown
    rows = [line for line in markdown.splitlines() if re.match(r"\| \d+ \| \d+ \|", line)]
    assert len(rows) == level.latent_dim
    assert [int(r.split("|")[2]) for r in rows] == level.order
    collapsed_rows = [r for r in rows if "**collapsed**" in r]
    assert len(collapsed_rows) == level.n_collapsed == 11
    # The (ε, δ)-collapse keeps its own column: dimension 2 is active by the headline rule, yet (ε, δ)-collapsed.
    row2 = next(r for r in rows if r.split("|")[2].strip() == "2")
    assert "| active |" in row2 and row2.split("|")[7].strip() == "yes"
    estimate = render_html(hierarchy_report())
    assert "linear-theory estimate" in estimate and "— differs" in estimate


def test_summary_numbers_and_missing_likelihood_reason():
    html = render_html(vae_report())
    assert "−41.25" in html and "−39.87" in html and "S = 1000" in html
    hierarchy = hierarchy_report()
    text = render_html(hierarchy) + render_markdown(hierarchy)
    assert "not computed: the objective has no decoder density" in text


def test_explanations_show_cause_and_prescription():
    html, markdown = render_html(vae_report()), render_markdown(vae_report())
    for text in (html, markdown):
        assert "β too large for the data" in text           # a known cause gets its heading
        assert "A cause of the future" in text              # an unknown one its own name
        assert "eta_dec = 0.3." in text                     # a dict prescription is spelled out
    assert "Set β &lt; 0.41 to keep 5 dimensions active (predicted)" in html
    assert "**Prescription:** Set β < 0.41 to keep 5 dimensions active (predicted)" in markdown
    assert "β η_dec² = 0.36 exceeds the data's eigenvalue along 12 directions." in markdown   # β stays β
    assert html.index('id="explanations"') < html.index('id="summary"')


def test_html_is_self_contained_and_escaped():
    report = vae_report()
    report.notes.append('a note with <script>alert("x")</script> & markup')
    fig = plot_kl_per_dim(report)
    html = render_html(report, {"kl_per_dim": fig, "traversals": b"not really a png"})
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', html, re.IGNORECASE)
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower().replace("&lt;script&gt;", "")
    assert "@import" not in html and "url(" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; markup" in html
    images = _images(html)
    assert len(images) == 2
    for tag in images:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', tag)
        alt = re.search(r'alt="([^"]+)"', tag)
        assert alt and len(alt.group(1)) > 20
    png = base64.b64decode(re.search(r'base64,([^"]+)"', images[0]).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r'width="\d+" height="\d+"', images[0])
    assert html.startswith("<!DOCTYPE html>") and '<html lang="en">' in html


def test_markdown_links_images():
    markdown = render_markdown(vae_report(), {"kl_per_dim": "figures/kl_per_dim.png",
                                              "activity": "figures/activity.png"})
    assert "![KL per dimension, sorted, with the theory's prediction](figures/kl_per_dim.png)" in markdown
    assert markdown.index("kl_per_dim.png") < markdown.index("activity.png")


# -- write_reports ------------------------------------------------------------------------------------
def test_write_reports_round_trips_json_and_writes_everything(tmp_path):
    report = vae_report()
    paths = write_reports(report, tmp_path / "out")
    assert {"json", "markdown", "html", "kl_per_dim", "kl_heatmap", "activity"} <= set(paths)
    assert "reconstructions" not in paths                      # no model given
    loaded = CollapseReport.load_json(paths["json"])
    assert loaded.to_dict() == report.to_dict()
    assert json.loads(paths["json"].read_text())["units"] == "nats"
    markdown = paths["markdown"].read_text(encoding="utf-8")
    for name in ("kl_per_dim", "kl_heatmap", "activity"):
        assert f"(figures/{name}.png)" in markdown
        assert (tmp_path / "out" / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    html = paths["html"].read_text(encoding="utf-8")
    assert len(_images(html)) == 3
    assert not list((tmp_path / "out").glob(".*tmp"))          # atomic writes leave no temporaries


def test_write_reports_closes_its_figures(tmp_path):
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    write_reports(vae_report(), tmp_path)
    assert set(plt.get_fignums()) == before


def test_write_reports_with_a_model_draws_reconstructions_and_traversals(tmp_path, digits):
    torch.manual_seed(0)
    model = build_model("vae", "mlp", x_dim=64, latent_dims=16, hidden=[32])
    paths = write_reports(vae_report(), tmp_path, model=model, x=digits.x[:32], image_shape=digits.image_shape)
    for name in ("reconstructions", "traversals"):
        data = paths[name].read_bytes()
        assert data[:4] == b"\x89PNG"
        assert f"figures/{name}.png" in paths["markdown"].read_text(encoding="utf-8")
    assert len(_images(paths["html"].read_text(encoding="utf-8"))) == 5


def test_history_without_activity_keys_still_renders(tmp_path):
    report = vae_report(activity=False)
    assert all("active_units" not in record for record in report.history)
    figure = plot_activity_over_epochs(report.history, latent_dims=[16])
    assert "not recorded: active units, mutual information" in figure._suptitle.get_text()
    assert "active dimensions" in figure.axes[0].get_title(loc="left")
    assert not any("Burda" in line.get_label() for line in figure.axes[0].lines)
    assert "not recorded" in " ".join(t.get_text() for t in figure.axes[1].texts)
    # The panel counts dimensions with KL ≥ 0.01 nats (the headline rule) from kl_per_dim, epoch by epoch.
    counts = figure.axes[0].lines[0].get_ydata()
    expected = [sum(v >= 0.01 for v in r["kl_per_dim"][0]) for r in report.history]
    np.testing.assert_array_equal(counts, expected)
    paths = write_reports(report, tmp_path)
    assert paths["activity"].is_file()


def test_history_with_partial_records_and_ceiling():
    history = vae_report().history
    for record in history[:3]:
        del record["active_units"], record["mutual_info_minibatch"]
    figure = plot_activity_over_epochs(history, mi_ceiling=np.log(128))
    mi = figure.axes[1].lines[0].get_ydata()
    assert np.isnan(mi[:3]).all() and np.isfinite(mi[3:]).all()
    assert any("log B" in line.get_label() for line in figure.axes[1].lines)


def test_empty_history_gives_no_history_figures():
    assert plot_kl_heatmap([]) is None
    assert plot_activity_over_epochs([]) is None
    report = vae_report()
    report.history = []
    html = render_html(report)
    assert "KL per dimension over epochs" not in html


# -- the figures themselves ---------------------------------------------------------------------------
def test_kl_per_dim_bars_are_sorted_and_collapsed_distinct():
    report = vae_report()
    level = report.levels[0]
    figure = plot_kl_per_dim(report)
    ax = figure.axes[0]
    bars = [patch for container in ax.containers for patch in container]
    tops = sorted((b.get_x() + b.get_width() / 2, b.get_y() + b.get_height(), b.get_hatch()) for b in bars)
    heights = [t[1] for t in tops]
    assert np.all(np.diff(heights) <= 1e-12)                  # sorted by KL, largest first
    hatched = [t for t in tops if t[2]]
    assert len(hatched) == level.n_collapsed
    assert [tick.get_text() for tick in ax.get_xticklabels()] == [str(j) for j in level.order]
    labels = [line.get_label() for line in ax.lines]
    assert "predicted KL (exact)" in labels and any(label.startswith("0.01 nats (active") for label in labels)
    assert ax.get_ylabel() == "KL per dimension (nats)"


def test_kl_plots_for_a_hierarchy_have_one_panel_per_level():
    report = hierarchy_report()
    figure = plot_kl_per_dim(report)
    assert len(figure.axes) == 2
    assert "predicted KL (linear-theory estimate)" in [line.get_label() for line in figure.axes[0].lines]
    assert figure.axes[1].get_title(loc="left").startswith("z2: 2 of 3 dimensions collapsed")
    heatmap = plot_kl_heatmap(report.history, level=1)
    image = heatmap.axes[0].images[0].get_array()
    assert image.shape == (3, len(report.history))
    assert [t.get_text() for t in heatmap.axes[0].get_yticklabels()] == ["z2[0]", "z2[1]", "z2[2]"]


def test_heatmap_handles_zero_kl():
    history = [{"epoch": e, "kl_per_dim": [[1.0 * e, 0.0, 1e-9]]} for e in (1, 2, 3)]
    figure = plot_kl_heatmap(history)
    values = np.asarray(figure.axes[0].images[0].get_array())
    assert np.all(np.isfinite(values)) and values.min() > 0
    level = make_level("z", [0.0, 0.0, 0.0])
    figure = plot_kl_per_dim(level)                            # all-zero KL: a finite log axis
    assert np.all(np.isfinite(figure.axes[0].get_ylim()))


def _panel(figure, row, col, shape=(8, 8)):
    return np.asarray(tile(figure.axes[0].images[0].get_array(), row, col, shape), float)


def test_reconstructions_decode_the_posterior_mean(digits):
    torch.manual_seed(1)
    model = build_model("vae", "linear", x_dim=64, latent_dims=5)
    x = torch.as_tensor(digits.x[:6])
    figure = plot_reconstructions(model, x, image_shape=(8, 8), n=6)
    with torch.no_grad():
        mu, _ = model.encoder(x)
        expected = model.likelihood(model.decoder(mu)).mean.numpy()
    for i in range(6):
        np.testing.assert_allclose(_panel(figure, 0, i), np.clip(digits.x[i].reshape(8, 8), 0, 1))
        np.testing.assert_allclose(_panel(figure, 1, i), np.clip(expected[i].reshape(8, 8), 0, 1), atol=1e-6)
    assert plot_reconstructions(model, x, image_shape=None) is None
    assert model.training                                      # the model's mode is restored


def test_traversal_of_an_ignored_dimension_is_constant(digits):
    torch.manual_seed(2)
    model = build_model("vae", "linear", x_dim=64, latent_dims=4)
    with torch.no_grad():
        model.decoder.map.weight[:, 2] = 0.0                  # the decoder ignores z[2]: collapsed
    steps = 5
    figure = plot_traversals(model, digits.x[:3], order=[0, 2, 1], image_shape=(8, 8), n_dims=3, steps=steps,
                             kl=[1.0, 0.5, 0.0, 0.2], collapsed=[False, False, True, False])
    rows = [[_panel(figure, r, c) for c in range(steps)] for r in range(3)]
    assert max(np.abs(rows[1][c] - rows[1][0]).max() for c in range(steps)) < 1e-6
    assert max(np.abs(rows[0][c] - rows[0][0]).max() for c in range(steps)) > 1e-3
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels[1] == "dim 2\nKL 0 nats\ncollapsed" and "collapsed" not in labels[0]
    assert plot_traversals(model, digits.x[:3], order=[0], image_shape=None) is None


def test_cvae_images_are_whole_and_the_condition_is_kept(digits):
    torch.manual_seed(3)
    pairs = quadrant_split(digits)
    model = build_model("cvae", "linear", x_dim=16, y_dim=48, latent_dims=3)
    x, y = pairs.x[:4], pairs.y[:4]
    figure = plot_reconstructions(model, x, y, image_shape=(8, 8), n=4, merge=quadrant_merge)
    whole = quadrant_merge(x, y, 8).reshape(-1, 8, 8)
    np.testing.assert_allclose(_panel(figure, 0, 0), np.clip(whole[0], 0, 1))
    recon = _panel(figure, 1, 0)
    np.testing.assert_allclose(recon[4:, :4], np.clip(whole[0][4:, :4], 0, 1))  # x (bottom-left) unchanged
    assert len(figure.axes[0].collections) == 2                 # tile frames, and the condition's outline
    traversal = plot_traversals(model, x, y, order=[0, 1, 2], image_shape=(8, 8), steps=3, merge=quadrant_merge)
    assert "condition x fixed" in traversal.axes[0].get_title(loc="left")
    for c in range(3):
        np.testing.assert_allclose(_panel(traversal, 0, c)[4:, :4], np.clip(whole[0][4:, :4], 0, 1))
    # Without a merge the 48-value y is no 8×8 image: nothing to draw.
    assert plot_reconstructions(model, x, y, image_shape=(8, 8)) is None


def test_hierarchy_traverses_z1(digits, tmp_path):
    torch.manual_seed(4)
    model = build_model("hvae", "mlp", x_dim=64, latent_dims=[6, 3], hidden=[16])
    figure = plot_traversals(model, digits.x[:2], order=list(range(6)), image_shape=(8, 8), n_dims=6, steps=3)
    title = figure.axes[0].get_title(loc="left")
    assert "z₁" in title and "decoders[0]" in title
    assert figure.axes[0].images[0].get_array().shape == (1 + 6 * 9, 1 + 3 * 9)
    paths = write_reports(hierarchy_report(), tmp_path, model=model, x=digits.x[:16], image_shape=(8, 8))
    assert {"kl_heatmap_z1", "kl_heatmap_z2", "reconstructions", "traversals"} <= set(paths)


def test_cvae_report_written_with_merge(digits, tmp_path):
    pairs = quadrant_split(digits)
    model = build_model("cvae", "mlp", x_dim=16, y_dim=48, latent_dims=4, hidden=[16])
    paths = write_reports(cvae_report(), tmp_path, model=model, x=pairs.x[:16], y=pairs.y[:16], image_shape=(8, 8),
                          merge=quadrant_merge)
    assert {"reconstructions", "traversals"} <= set(paths)


def test_a_model_that_breaks_the_contract_costs_its_figures_not_the_report(tmp_path, digits):
    class Broken(torch.nn.Module):
        def forward(self, x, y=None, n_samples=1):
            raise RuntimeError("no posterior here")

    paths = write_reports(vae_report(), tmp_path, model=Broken(), x=digits.x[:4], image_shape=(8, 8))
    assert "reconstructions" not in paths and paths["html"].is_file()
    assert "reconstructions not drawn: RuntimeError: no posterior here" in paths["html"].read_text(encoding="utf-8")
    assert "no posterior here" not in paths["json"].read_text()   # the JSON holds the diagnosis only


# -- terminal -----------------------------------------------------------------------------------------
def test_terminal_summary():
    console = Console(record=True, width=140, color_system=None)
    report = vae_report()
    print_collapse_report(report, console)
    text = console.export_text()
    assert "5 of 16 dimensions of z active (mean KL ≥ 0.01 nats per example, measured on digits, 1797 examples)" in text
    assert "5 active predicted, 5 measured — agrees" in text
    assert "predicted (exact)" in text and "Var E[z_j]" in text
    assert "→ Set β < 0.41 to keep 5 dimensions active (predicted)" in text
    assert "(bootstrap CI 4.256 to 4.566)" in text and "S = 1000" in text
    lines = [line for line in text.splitlines() if re.match(r"│\s+\d+ │", line)]
    assert [int(line.split("│")[2]) for line in lines] == report.levels[0].order


def test_terminal_summary_truncates_long_levels():
    report = CollapseReport(levels=[make_level("z", list(np.linspace(2, 0, 40)))], n_examples=10)
    console = Console(record=True, width=140, color_system=None)
    print_collapse_report(report, console, max_rows=10)
    text = console.export_text()
    assert "30 more dimensions with smaller KL" in text
    assert "log-likelihood: not computed" in text


def test_theory_difference_says_which_way_and_flags_an_unconverged_run():
    from collapsekit.diagnostics.report import TheoryComparison

    def comparison(measured: list[float], n_measured: int) -> TheoryComparison:
        return TheoryComparison(model="vae", theorem="linear VAE", exact=True, label="exact",
                                kl_per_dim=[1.0, 0.5, 0.2, 0.0, 0.0], measured_sorted=measured,
                                n_active_predicted=3, n_active_measured=n_measured)

    assert comparison([1.0, 0.5, 0.2, 0.0, 0.0], 3).difference() == ""
    slow = comparison([1.0, 0.5, 0.2, 0.036, 0.009], 5).difference()
    assert slow.startswith("2 dimension(s) the theory collapses were measured active, with 0.009–0.036 nats")
    assert "not converged" in slow
    # a large extra KL is a real disagreement, not slow convergence
    assert "not converged" not in comparison([1.0, 0.5, 0.2, 0.3, 0.0], 4).difference()
    assert comparison([1.0, 0.5, 0.0, 0.0, 0.0], 2).difference() == \
        "1 dimension(s) the theory keeps active were measured collapsed (predicted 0.2 nats)"
