"""The app in a real browser (Debian chromium driven by Playwright): every tab, an upload, Heatmaps, Outcomes,
a deep link. One screenshot per tab goes to ``$XCXR_SCREENSHOTS`` (default: a temp folder); the README's
screenshots are refreshed with ``XCXR_SCREENSHOTS=docs/screenshots python -m pytest tests/test_space_browser.py``.

Chromium comes from Debian (``apt-get install chromium``, done by ``.ci/run``), never from ``playwright install``.
Without it these tests skip, except under CI (``CI=true``), where a missing browser is a failure.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, launched_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip("Debian chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else __import__(
    "playwright.sync_api", fromlist=["sync_playwright"])

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
EXAMPLE = "PNEUMONIA/person1071_virus_1774.jpeg"
TIMEOUT = 60_000  # ms; a shared 2-core machine


@pytest.fixture(scope="module")
def app_url():
    with launched_app() as demo:
        yield demo.local_url.rstrip("/")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    home = tmp_path_factory.mktemp("chromium")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["XDG_CACHE_HOME"] = str(home / "cache")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


SHOTS = Path(os.environ.get("XCXR_SCREENSHOTS") or tempfile.mkdtemp(prefix="xcxr-shots-"))


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()


def wait_image(page, label: str) -> None:
    """Wait until the visible output block labelled ``label`` (an image or a gallery) shows a picture."""
    page.locator(".block:visible", has_text=label).locator("img:visible").first.wait_for(state="visible")


def click(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).locator("visible=true").first.click()


def test_classify_an_upload(page, app_url):
    page.goto(app_url)
    page.get_by_role("tab", name="Classify", exact=True).wait_for()
    page.locator("input[type=file]").first.set_input_files(str(ROOT / "examples" / "chest_xray_test" / EXAMPLE))
    page.get_by_role("button", name="Classify", exact=True).click()
    label = page.locator(".block:has-text('Class probabilities')").first
    label.get_by_text("PNEUMONIA").first.wait_for()
    page.get_by_text("%").first.wait_for()
    assert "NORMAL" in label.inner_text()
    page.get_by_text("Preprocessing", exact=False).first.wait_for()
    shot(page, "classify")


def test_every_tab_opens_and_shows_its_results(page, app_url):
    page.goto(app_url)
    open_tab(page, "Heatmaps")
    click(page, "Explain")
    wait_image(page, "Grad-CAM: NORMAL")
    wait_image(page, "Grad-CAM: PNEUMONIA")
    wait_image(page, "Saliency")
    page.get_by_text("logit", exact=False).locator("visible=true").first.wait_for()
    shot(page, "heatmaps")

    open_tab(page, "Filters")
    click(page, "Show filters")
    wait_image(page, "First-layer filters")
    shot(page, "filters")

    open_tab(page, "Feature maps")
    click(page, "Show feature maps")
    wait_image(page, "Feature maps after each stage")
    shot(page, "feature_maps")

    open_tab(page, "Outcomes")
    click(page, "Show outcomes")
    wait_image(page, "TP —")
    page.locator(".block:visible", has_text="TP —").locator("img:visible").first.click()
    page.locator("#outcomes-heat-0 img").wait_for(state="visible")  # the selected example's heatmaps, both classes
    page.locator("#outcomes-heat-1 img").wait_for(state="visible")
    shot(page, "outcomes")

    open_tab(page, "Model report")
    click(page, "Show report")
    wait_image(page, "ROC (F1 and G-mean points marked)")
    wait_image(page, "Confusion matrix at the threshold")
    page.locator(".block:visible", has_text="Metrics").get_by_text("auc", exact=False).first.wait_for()
    shot(page, "report")

    open_tab(page, "Trust")
    click(page, "Run the checks")
    wait_image(page, "Grad-CAM after each randomisation step")
    page.locator(".block:visible", has_text="Areas under the curves").get_by_text("deletion").first.wait_for()
    shot(page, "trust")


def test_deep_link_opens_tab_model_and_example(page, app_url):
    page.goto(f"{app_url}/?tab=heatmaps&model=pneumonia_cnn&example={EXAMPLE}")
    heat_tab = page.get_by_role("tab", name="Heatmaps", exact=True)
    heat_tab.wait_for()
    page.wait_for_function("() => document.querySelector('[role=tab][aria-selected=true]')?.textContent"
                           ".includes('Heatmaps')")
    wait_image(page, "Grad-CAM: PNEUMONIA")
    page.get_by_role("button", name="Copy link to this view").click()
    link = page.get_by_label("Link (copied to the clipboard)")
    page.wait_for_function("() => [...document.querySelectorAll('textarea,input')].some(e => e.value.includes('tab=heatmaps'))")
    assert "example=" in link.input_value() and "model=pneumonia_cnn" in link.input_value()
    shot(page, "deep_link")
