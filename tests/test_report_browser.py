"""The HTML report in a real headless browser (Debian's chromium, driven by playwright).

A small linear VAE is trained on the bundled digits through collapsekit.training, measured, set
beside the linear theory's exact prediction, and written with write_reports. Chromium then opens
report.html from disk: no console error, no page error, no request leaving the file, every image
decoded, the section headings present, and the screenshot shows the plots (pixel statistics of
each figure's region, and the report's blue bars in the KL figure).

Chromium is installed by ``make test`` (apt-get, as root). Without it, or without the playwright
package, the test skips; under CI (the CI environment variable set) it fails with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("COLLAPSEKIT_CHROMIUM", "/usr/bin/chromium")
# Flags that keep chromium off the network and quiet in a container (no sandbox as root, no GPU).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
HEADINGS = {"Verdict", "Explanations", "Summary", "Plots", "Per-dimension measurements", "Notes"}
FIGURES = {"kl_per_dim", "kl_heatmap", "activity", "reconstructions", "traversals"}


def _unavailable(reason: str) -> None:
    message = f"browser test cannot run: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: `make test` installs chromium with apt-get as root)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def sync_playwright():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} not found; install Debian's chromium (apt-get install chromium) or run `make test`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    return sync_playwright


@pytest.fixture(scope="module")
def trained_report(tmp_path_factory):
    """A real run: MLP VAE, 10 latent dims, β = 2, η_dec = 0.4 on digits, 5 epochs (a few seconds).

    The linear theory keeps 5 dimensions active at these settings; for an MLP that is a
    linear-theory estimate, and the run collapses a few dimensions of its own.
    """
    import math

    import torch
    from report_helpers import measure

    from collapsekit.data import load_digits
    from collapsekit.diagnostics.report import CollapseReport, TheoryComparison
    from collapsekit.theory import Moments, predict_vae
    from collapsekit.training import RunConfig, train

    config = RunConfig.parse({
        "data": {"spec": "digits"},
        "model": {"kind": "vae", "arch": "mlp", "hidden": [64], "latent_dims": [10], "eta_dec": 0.4},
        "objective": {"beta": 2.0}, "optim": {"lr": 0.01},
        "train": {"epochs": 5, "batch_size": 64, "seed": 0, "progress": False}})
    run_dir = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # a tiny model: extra threads only contend with the other test workers
    try:
        result = train(config, run_dir)
        digits = load_digits()
        level = measure(result.model, torch.as_tensor(digits.x))
    finally:
        torch.set_num_threads(threads)
    prediction = predict_vae(Moments.from_data(digits.x), 10, beta=2.0, eta_enc=1.0, eta_dec=0.4)
    predicted = sorted((float(v) for v in prediction.kl_per_dim), reverse=True)
    n_active = int(np.count_nonzero(~np.asarray(prediction.collapsed)))
    level.theory = TheoryComparison(
        model="vae", theorem=prediction.theorem, exact=False, label="linear-theory estimate", kl_per_dim=predicted,
        measured_sorted=sorted(level.kl_per_dim, reverse=True), n_active_predicted=n_active,
        n_active_measured=level.latent_dim - level.n_collapsed,
        critical_beta=sorted((float(v) for v in prediction.critical_beta), reverse=True),
        hyperparameters={"beta": 2.0, "eta_enc": 1.0, "eta_dec": 0.4})
    keep = sorted(prediction.critical_beta, reverse=True)
    explanations = []
    if level.n_collapsed:
        explanations.append({
            "level": "z", "cause": "beta",
            "message": f"β·η_dec² = {2.0 * 0.4 ** 2:g} is at or above the data's second moment along "
                       f"{10 - n_active} of the 10 latent directions: their KL costs more than it saves.",
            "prescription": f"keep β below {keep[n_active]:.3g} to keep {n_active + 1} dimensions active, "
                            f"or lower η_dec below {0.4 * math.sqrt(keep[n_active] / 2.0):.3g}"})
    report = CollapseReport(
        levels=[level], n_examples=digits.n, elbo=-float(result.metrics[-1]["reconstruction"] + result.metrics[-1]["kl"]), log_likelihood=None,
        model={"kind": "vae", "arch": "mlp", "latent_dims": [10], "beta": 2.0, "eta_enc": 1.0, "eta_dec": 0.4,
               "data": "digits", "epoch": 5, "run_dir": str(run_dir), "batch_size": 64},
        explanations=explanations, history=result.metrics,
        notes=["log-likelihood not computed in this test (importance sampling is the diagnosis's job)",
               "evaluated on the data the model was trained on"])
    return report, result.model, digits


def test_report_html_in_chromium(sync_playwright, trained_report, tmp_path):
    import matplotlib.image

    from collapsekit.viz.report import write_reports

    report, model, digits = trained_report
    paths = write_reports(report, tmp_path / "report", model=model, x=digits.x[:16],
                          image_shape=digits.image_shape)
    assert FIGURES <= set(paths)
    url = paths["html"].resolve().as_uri()
    screenshot = tmp_path / "report.png"

    console, errors, requests, failed = [], [], [], []
    user_data = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                user_data, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1280, "height": 900}, timeout=60_000)
            try:
                page = context.new_page()
                page.set_default_timeout(60_000)
                page.on("console", lambda message: console.append((message.type, message.text)))
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("request", lambda request: requests.append(request.url))
                page.on("requestfailed", lambda request: failed.append(request.url))
                page.goto(url, wait_until="load")
                images = page.evaluate("""() => Array.from(document.images).map(img => {
                    const box = img.getBoundingClientRect();
                    return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                            alt: img.alt, id: img.closest('figure') ? img.closest('figure').id : '',
                            x: box.left + window.scrollX, y: box.top + window.scrollY,
                            w: box.width, h: box.height};
                })""")
                headings = page.evaluate("() => Array.from(document.querySelectorAll('h1, h2, h3'))"
                                         ".map(h => [h.tagName, h.textContent.trim()])")
                banner = page.inner_text(".banner")
                scale = page.evaluate("() => window.devicePixelRatio")
                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                context.close()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)

    print(f"report screenshot: {screenshot}")
    assert not errors, f"page errors: {errors}"
    assert not [m for m in console if m[0] == "error"], f"console errors: {console}"
    assert not failed, f"failed requests: {failed}"
    assert all(u.startswith(("file:", "data:")) for u in requests), f"requests left the file: {requests}"

    # Every image is decoded, described, and one of the report's figures.
    assert {image["id"] for image in images} == {f"fig-{name}" for name in FIGURES}
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert len(image["alt"]) > 20, image
        assert image["w"] > 200 and image["h"] > 100, image        # laid out at a readable size
    found = {text for tag, text in headings if tag == "H2"}
    assert HEADINGS <= found, f"missing headings: {HEADINGS - found}"
    level = report.levels[0]
    assert f"{level.n_collapsed} of {level.latent_dim} dimensions of z collapsed" in banner

    # The screenshot shows the plots: each figure's region is far from blank.
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[1] >= 1200 and pixels.shape[0] > 2000
    assert pixels.std() > 0.05
    for image in images:
        top, left = int(image["y"] * scale), int(image["x"] * scale)
        region = pixels[top:top + int(image["h"] * scale), left:left + int(image["w"] * scale)]
        assert region.size, image["id"]
        ink = np.mean(region.min(axis=-1) < 0.85)                 # share of pixels that are not near-white
        assert ink > 0.03 and region.std() > 0.08, (image["id"], ink, region.std())
    # The KL figure shows its blue (#0072B2) bars.
    kl = next(image for image in images if image["id"] == "fig-kl_per_dim")
    top, left = int(kl["y"] * scale), int(kl["x"] * scale)
    region = pixels[top:top + int(kl["h"] * scale), left:left + int(kl["w"] * scale)]
    blue = np.all(np.abs(region - np.array([0.0, 0x72 / 255, 0xB2 / 255])) < 0.08, axis=-1)
    assert blue.mean() > 0.01, blue.mean()
    keep = os.environ.get("COLLAPSEKIT_REPORT_SCREENSHOT")
    if keep:                                                      # for a person to look at
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, keep)
        shutil.copytree(paths["html"].parent, Path(keep).with_suffix(""), dirs_exist_ok=True)
