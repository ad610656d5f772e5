"""The app in a real browser at a classroom screen's size (1366×768): what a student sees and relies on.

Debian chromium driven by Playwright. Each test checks one thing a visitor relies on (issue "The classroom view"):
no stale maps next to a new example, one decision line, colour bars drawn into the heatmaps, the grid, the Trust
tab's verdict and "how to read", no truncated captions or scrolling tables, thresholds named by where they were
chosen, deep links (opened, copied, re-opened, warned about), feature-map tiles and their preview, "Reproduce in
Python". Screenshots go to ``$XCXR_SCREENSHOTS`` (default: a temp folder); the README's are refreshed with
``XCXR_SCREENSHOTS=docs/screenshots python -m pytest tests/test_space_browser.py``.

Chromium comes from Debian (``apt-get install chromium``, done by ``.ci/run``), never from ``playwright install``.
Without it these tests skip, except under CI (``CI=true``), where a missing browser is a failure.

Toasts: every toast body seen while a page is open is recorded (an init script watches the page), so a toast that
shows and goes between two checks is still caught; a page that showed an error toast fails its test.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from conftest import ROOT, SYSTEM_TMP, launched_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip("Debian chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else __import__(
    "playwright.sync_api", fromlist=["sync_playwright"])

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1366, "height": 768}  # a classroom projector / school laptop
MODEL = "pneumonia_cnn"
EXAMPLE = "PNEUMONIA/person1071_virus_1774.jpeg"  # the tabs' first example (the default model's last class)
#: Examples whose P(PNEUMONIA) lies between 0.5 and the bundled model's threshold (0.624): the class at the threshold
#: (NORMAL) is not the larger bar, so a headline over the bars would contradict the decision line.
BETWEEN = ("NORMAL/IM-0079-0001.jpeg", "PNEUMONIA/person1261_bacteria_3219.jpeg",
           "PNEUMONIA/person613_bacteria_2479.jpeg")
EXAMPLE_LABEL = "…or pick a bundled example (true label in brackets)"
TIMEOUT = 90_000  # ms; a shared 2-core machine

#: Records the text of every toast body the page shows (window.__xcxrToasts), even one that goes again at once.
_TOAST_RECORDER = """
window.__xcxrToasts = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[class*=toast-body]')) {
    const t = (el.innerText || '').trim();
    if (t && !window.__xcxrToasts.includes(t)) window.__xcxrToasts.push(t);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def app():
    with launched_app() as demo:
        yield demo


@pytest.fixture(scope="module")
def app_url(app):
    return app.local_url.rstrip("/")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    home = tmp_path_factory.mktemp("chromium")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["XDG_CACHE_HOME"] = str(home / "cache")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@contextmanager
def new_page(browser):
    """A fresh 1366×768 page; on leaving, fails on JavaScript errors and on error toasts it showed."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(_TOAST_RECORDER)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
        failed = [t for t in seen_toasts(pg) if "Error" in t]
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
    assert not failed, f"error toasts in the page: {failed}"


@pytest.fixture
def page(browser):
    with new_page(browser) as pg:
        yield pg


SHOTS = Path(os.environ.get("XCXR_SCREENSHOTS") or tempfile.mkdtemp(prefix="xcxr-shots-", dir=SYSTEM_TMP))


def images_loaded(page) -> None:
    """Wait until every image on screen (lazy ones too) has loaded: a screenshot never shows an empty frame."""
    page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function("() => [...document.querySelectorAll('img')].filter(i => i.offsetParent !== null)"
                           ".every(i => i.complete && i.naturalWidth > 0)")


def shot(page, name: str, full_page: bool = True) -> None:
    """``$XCXR_SCREENSHOTS/<name>.png``: the whole page from its top, or (``full_page=False``) the viewport as it
    is, which is what a student sees first."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    images_loaded(page)
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


# ----------------------------------------------------------------------------------------------------- helpers
def seen_toasts(page) -> list[str]:
    """The text of every toast the page has shown since it was (re)loaded."""
    return list(page.evaluate("() => window.__xcxrToasts || []"))


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()
    selected_tab(page, title)


def selected_tab(page, title: str) -> None:
    page.wait_for_function("t => document.querySelector('[role=tab][aria-selected=true]')?.textContent.trim() === t",
                           arg=title)


def visible(page, selector: str):
    return page.locator(selector).locator("visible=true")


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` (its shown text) in the visible dropdown labelled ``label``."""
    box = page.get_by_label(label, exact=True).locator("visible=true").first
    box.click()
    page.get_by_role("option", name=option, exact=True).locator("visible=true").first.click()
    assert box.input_value() == option


def wait_images(page, selector: str, n: int) -> list[dict]:
    """Wait until ``selector`` holds ``n`` loaded images; their ``src``, natural and shown sizes."""
    page.wait_for_function("([s, n]) => { const im = [...document.querySelectorAll(s + ' img')];"
                           " return im.length === n && im.every(i => i.complete && i.naturalWidth > 0); }",
                           arg=[selector, n])
    return page.eval_on_selector_all(selector + " img", "im => im.map(i => ({src: i.getAttribute('src'), "
                                    "w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}))")


def first_example(app, label: str) -> str:
    return next(e for e in app.xcxr_context.examples if app.xcxr_context.examples.label(e) == label)


def example_label(example_id: str) -> str:
    from space.context import example_label as label
    return label(example_id)


# ----------------------------------------------------------------------------------------------------- Classify
def test_classify_one_decision_line_at_the_models_threshold(page, app_url, app, model):
    """The decision line names the class at the model's threshold; the bars carry no headline (for an image with
    0.5 ≤ P < threshold a headline would name the other class); an upload replaces the example's result."""
    from lib.models import get_config
    from space.context import load_image
    from space.tabs.classify import class_probabilities

    ctx = app.xcxr_context
    labels, thr = list(get_config(model)["labels"]), float(get_config(model)["threshold"])
    probs = {e: class_probabilities(model, load_image(ctx, None, e, model, original=False)[0])[labels[1]]
             for e in BETWEEN if e in ctx.examples}
    assert probs, f"none of {BETWEEN} is a bundled example any more"
    example = next((e for e, p in probs.items() if 0.5 <= p < thr), next(iter(probs)))

    page.goto(app_url)
    decision = page.locator("#classify-decision")
    decision.get_by_text("threshold").wait_for()
    choose(page, EXAMPLE_LABEL, example_label(example))
    decision.get_by_text(f"true label (folder): {ctx.examples.label(example)}").wait_for()
    line = decision.locator("p").first.inner_text()
    m = re.match(rf"^({'|'.join(labels)}) — P\({labels[1]}\) = ([\d.]+), (at or above|below) the model's threshold "
                 r"([\d.]+) \(", line)
    assert m, f"not one decision line: {line!r}"
    named, p_text, side, thr_text = m.group(1), float(m.group(2)), m.group(3), float(m.group(4))
    assert abs(thr_text - thr) < 1e-3, f"the line's threshold {thr_text} is not the model's {thr:.4f}"
    assert abs(p_text - probs[example]) < 1e-3, (p_text, probs[example])
    assert (named == labels[1]) == (probs[example] >= thr) == (side == "at or above"), line
    bars = page.locator(".block:visible", has_text="Class probabilities").first
    meter = float(bars.locator(f"meter[aria-label='{labels[1]}']").get_attribute("value"))
    assert abs(meter - probs[example]) < 1e-3, "the bars show another probability than the decision line"
    headline = bars.locator("[data-testid=label-output-value], h2")
    assert headline.count() == 0, f"the bars have a headline: {headline.all_inner_texts()} vs the decision {named}"
    assert decision.locator("p").filter(has_text="threshold").count() == 1, "more than one decision line"
    shot(page, "classify")

    # an upload: the example's decision goes, the upload's comes (no "true label" for an upload)
    page.locator("input[type=file]").first.set_input_files(str(ROOT / "examples" / "chest_xray_test" / EXAMPLE))
    page.get_by_role("button", name="Classify", exact=True).click()
    page.wait_for_function("() => { const t = document.querySelector('#classify-decision').innerText;"
                           " return t.startsWith('PNEUMONIA') && !t.includes('true label'); }")


# ----------------------------------------------------------------------------------------------------- Heatmaps
_TIMELINE = """
() => {
  const root = document.getElementById('heatmaps-result');
  const srcs = () => [...root.querySelectorAll('img')].map(i => i.getAttribute('src') || '');
  window.__heatTimeline = [srcs()];
  new MutationObserver(() => window.__heatTimeline.push(srcs()))
    .observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}
"""


def test_heatmaps_colour_bars_and_no_stale_maps(page, app_url, app):
    """The three maps carry their colour bars (wider than tall); choosing another example removes the old maps
    before the new ones arrive — never an old map beside a new one — and the dropdown shows the file name."""
    page.goto(app_url)
    page.locator("#classify-decision").get_by_text("threshold").wait_for()
    open_tab(page, "Heatmaps")
    old = wait_images(page, "#heatmaps-result", 3)
    for img in old:  # the colour bar is drawn into the image, to the right of the map
        assert img["w"] > 1.1 * img["h"], f"no colour bar in the image: {img}"
    page.get_by_text("What these maps show").locator("visible=true").first.wait_for()
    shot(page, "heatmaps")

    page.evaluate(_TIMELINE)
    other = first_example(app, "NORMAL")
    choose(page, EXAMPLE_LABEL, example_label(other))
    shown = page.get_by_label(EXAMPLE_LABEL, exact=True).locator("visible=true").first.input_value()
    assert shown == example_label(other) and not shown.startswith("NORMAL/"), shown
    old_srcs = {i["src"] for i in old}
    page.wait_for_function("old => { const im = [...document.querySelectorAll('#heatmaps-result img')];"
                           " return im.length === 3 && im.every(i => i.complete && i.naturalWidth > 0"
                           " && !old.includes(i.getAttribute('src'))); }", arg=sorted(old_srcs))
    timeline = page.evaluate("() => window.__heatTimeline")  # the images' srcs after every change of them
    first_new = next(i for i, s in enumerate(timeline) if set(s) - old_srcs - {""})
    short = [["old" if x in old_srcs else "new" if x else "-" for x in s] for s in timeline]
    assert any(not set(s) & old_srcs for s in timeline[:first_new]), \
        f"the old maps stayed on screen until the new ones came: {short}"
    assert not any(set(s) & old_srcs and set(s) - old_srcs - {""} for s in timeline), \
        f"an old map shown beside a new one: {short}"
    for img in wait_images(page, "#heatmaps-result", 3):
        assert img["w"] > 1.1 * img["h"], f"no colour bar in the image: {img}"


def test_heatmaps_reproduce_in_python(page, app_url):
    """The "Reproduce in Python" box of the Heatmaps view holds the lib calls behind it."""
    page.goto(f"{app_url}/?tab=heatmaps&model={MODEL}&example={EXAMPLE}")
    wait_images(page, "#heatmaps-result", 3)
    visible(page, "button.label-wrap").filter(has_text=re.compile(r"^\s*Reproduce in Python\b")).first.click()
    code = visible(page, ".cm-content").first
    code.get_by_text("gradcam").first.wait_for()
    text = code.inner_text()
    assert "load_model(" in text and "gradcam(" in text, text
    assert Path(EXAMPLE).name in text, "the code does not load the image shown"


def test_heatmaps_grid_from_a_link(page, app_url):
    """A grid link opens the grid accordion and renders 10 images × (X-ray + both classes): a tall image."""
    page.goto(f"{app_url}/?tab=heatmaps&grid=course&grid_split=examples&grid_n=5")
    (grid,) = wait_images(page, "#heatmaps-grid", 1)
    assert grid["h"] > 2 * grid["w"], f"not 10 rows × 3 columns: {grid}"
    visible(page, ".prose").get_by_text("One colour scale for every map").first.wait_for()
    assert seen_toasts(page) == [], seen_toasts(page)
    shot(page, "grid")


def test_heatmaps_copy_link_round_trip(page, browser, app_url, model):
    """Every control goes into the copied link, with the model's revision; the link brings them all back, and the
    maps it shows are computed with them."""
    from lib.models import weights_revision
    from space.tabs.heatmaps import layer_choices

    layer = [v for _, v in layer_choices(model)][2]  # a conv layer that is not the default
    page.goto(f"{app_url}/?tab=heatmaps")
    wait_images(page, "#heatmaps-result", 3)
    choose(page, "Target layer (conv layers, forward order)", layer)
    page.get_by_role("checkbox", name="ReLU (paper); off = signed map").uncheck()
    page.get_by_role("radio", name="nearest").check()
    visible(page, "input[type=radio][value=per_map]").first.check()
    choose(page, "Saliency method (predicted class)", "guided_backprop")
    page.get_by_role("button", name="Copy link to this view").click()
    box = page.get_by_label("Link (copied to the clipboard)")
    page.wait_for_function("() => [...document.querySelectorAll('textarea,input')]"
                           ".some(e => e.value.includes('tab=heatmaps'))")
    link = box.input_value()
    q = {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}
    want = {"tab": "heatmaps", "model": MODEL, "rev": weights_revision(model), "layer": layer, "relu": "false",
            "upsample": "nearest", "scale": "per_map", "method": "guided_backprop"}
    assert {k: q.get(k) for k in want} == want, link

    with new_page(browser) as again:
        again.goto(link)
        selected_tab(again, "Heatmaps")
        again.locator(".prose:visible", has_text="Signed (ReLU off)").get_by_text(layer).first.wait_for()
        wait_images(again, "#heatmaps-result", 3)
        assert again.get_by_label("Target layer (conv layers, forward order)", exact=True) \
            .locator("visible=true").first.input_value() == layer
        assert not again.get_by_role("checkbox", name="ReLU (paper); off = signed map").is_checked()
        assert again.get_by_role("radio", name="nearest").is_checked()
        assert visible(again, "input[type=radio][value=per_map]").first.is_checked()
        assert again.get_by_label("Saliency method (predicted class)", exact=True) \
            .locator("visible=true").first.input_value() == "guided_backprop"
        assert seen_toasts(again) == [], f"the copied link opens with warnings: {seen_toasts(again)}"


def test_link_to_an_unknown_model_warns(page, app_url):
    """A link naming a model the app does not have says so in a warning toast, and shows the default model."""
    page.goto(f"{app_url}/?tab=heatmaps&model=no_such_model")
    page.locator("[class*=toast-body]", has_text="no_such_model").first.wait_for()
    toast = [t for t in seen_toasts(page) if "no_such_model" in t]
    assert toast and "Warning" in toast[0] and "unknown model 'no_such_model'" in toast[0], toast
    wait_images(page, "#heatmaps-result", 3)  # the default model's maps instead


# ----------------------------------------------------------------------------------------------------- Outcomes
def test_outcomes_link_shows_the_case_in_view(page, app_url):
    """An outcome link: FP #2's heatmaps scrolled into the 768 px viewport, its thumbnail highlighted, no toast;
    the thumbnails' captions ("#3 · 0.87") are whole."""
    q = {"tab": "outcomes", "model": MODEL, "split": "test", "threshold": "gmean", "outcome": "FP", "index": 2}
    page.goto(f"{app_url}/?{urlencode(q)}")
    page.locator("#outcomes-caption").get_by_text("FP #2").wait_for()
    wait_images(page, "#outcomes-result", 2)
    # the link scrolls the heatmaps into view (again once the page above has its final height)
    page.wait_for_function("() => [...document.querySelectorAll('#outcomes-result img')].every(i => {"
                           " const r = i.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; })")
    page.wait_for_timeout(1600)  # the last of the link's scrolls
    for box in (page.locator("#outcomes-result img").nth(i).bounding_box() for i in range(2)):
        assert box["y"] < VIEWPORT["height"] and box["y"] + box["height"] > 0, f"heatmap out of view: {box}"
    thumbs = page.locator("#outcomes-fp .thumbnail-item")
    assert "selected" in thumbs.nth(1).get_attribute("class"), "FP #2's thumbnail is not highlighted"
    assert page.locator(".thumbnail-item.selected:visible").count() == 1, "another thumbnail is highlighted too"
    assert seen_toasts(page) == [], seen_toasts(page)
    shot(page, "deep_link", full_page=False)

    captions = page.eval_on_selector_all(
        "[id^=outcomes-] .caption-label", "cs => cs.map(c => [c.innerText, c.scrollWidth, c.clientWidth])")
    assert captions, "no thumbnail captions"
    for text, scroll, client in captions:
        assert re.fullmatch(r"#\d+ · [01]\.\d\d", text), f"caption {text!r}"
        assert scroll <= client, f"caption {text!r} is cut ({scroll} > {client} px)"
    shot(page, "outcomes")


# ----------------------------------------------------------------------------------------------------- Model report
def test_report_link_shows_roc_and_metrics(page, app_url):
    """A report link computes the report without a click; the table fits (no sideways scroll); thresholds say
    where they were chosen."""
    page.goto(f"{app_url}/?tab=report&model={MODEL}&split=test&threshold=gmean")
    selected_tab(page, "Model report")
    wait_images(page, "#report-result", 2)  # ROC, confusion matrix
    table = page.locator("#report-metrics")
    table.get_by_text("ROC AUC").wait_for()
    n_rows = int(table.locator("[role=grid]").get_attribute("aria-rowcount"))
    assert n_rows >= 11, f"{n_rows - 1} rows in the metrics table"
    scrolls = table.evaluate("t => [t, ...t.querySelectorAll('*')].filter(e => ['auto', 'scroll']"
                             ".includes(getComputedStyle(e).overflowX)).map(e => [e.className, e.scrollWidth, "
                             "e.clientWidth])")
    wide = [s for s in scrolls if s[1] > s[2]]
    assert not wide, f"the metrics table scrolls sideways: {wide}"
    text = visible(page, "[role=tabpanel]").first.inner_text()
    assert "chosen on validation" in text and "best on this split (optimistic)" in text, text[:2000]
    shot(page, "report")


# ----------------------------------------------------------------------------------------------------- Trust
def test_trust_link_runs_and_says_how_to_read(page, app_url, app):
    """A Trust link runs the checks on open: a one-sentence verdict, and beside the curves how to read them with
    the baseline's probability."""
    example = first_example(app, "NORMAL")
    page.goto(f"{app_url}/?tab=trust&example={example}")
    selected_tab(page, "Trust")
    verdict = page.locator("#trust-verdict")
    verdict.get_by_text("Grad-CAM for").wait_for()
    sentence = verdict.locator("p").first.inner_text().strip()
    assert re.fullmatch(r"Grad-CAM for \w+ (passes|fails|has no) [^\n]+ and [^\n]+\.", sentence), sentence
    assert ". " not in sentence, f"more than one sentence: {sentence!r}"
    assert page.get_by_label(EXAMPLE_LABEL, exact=True).locator("visible=true").first.input_value() == \
        example_label(example)
    how = visible(page, ".prose").filter(has_text="How to read the curves").first
    how.wait_for()
    assert re.search(r"The baseline.*P\(\w+\) = [01]\.\d{3}", how.inner_text()), how.inner_text()
    beside = how.evaluate("""h => { const r = h.getBoundingClientRect(); const row = h.closest('.row');
        return row ? [...row.children].filter(c => { const b = c.getBoundingClientRect();
          return c !== h && !c.contains(h) && b.width > 100 && b.right <= r.left + 5 && b.top < r.bottom
                 && b.bottom > r.top; }).length : 0; }""")
    assert beside >= 2, "the how-to-read text is not beside the deletion and insertion curves"
    images_loaded(page)
    shot(page, "trust")


# ------------------------------------------------------------------------------------------- Feature maps, Filters
def test_feature_maps_tiles_and_preview(page, app_url):
    """Feature-map tiles are large enough to see (≥ 150 px); a click opens one enlarged (> 400 px)."""
    page.goto(app_url)
    page.locator("#classify-decision").get_by_text("threshold").wait_for()
    open_tab(page, "Feature maps")
    page.wait_for_function("() => document.querySelectorAll('#feature-maps-gallery .grid-container img').length >= 8")
    tiles = page.eval_on_selector_all("#feature-maps-gallery .grid-container img",
                                      "im => im.map(i => i.getBoundingClientRect().width)")
    assert min(tiles) >= 150, f"feature-map tiles narrower than 150 px: {tiles}"
    shot(page, "feature_maps")
    page.locator("#feature-maps-gallery .grid-container img").nth(1).click()
    big = page.locator("#feature-maps-gallery [data-testid=detailed-image]")
    big.wait_for()
    page.wait_for_function("() => { const i = document.querySelector('#feature-maps-gallery "
                           "[data-testid=detailed-image]'); return i.complete && i.naturalWidth > 0; }")
    assert big.bounding_box()["width"] > 400, big.bounding_box()


def test_filters_panels_drawn(page, app_url):
    """Every model's filter panel loads and is not blank."""
    page.goto(app_url)
    page.locator("#classify-decision").get_by_text("threshold").wait_for()
    open_tab(page, "Filters")
    page.wait_for_function("() => document.querySelectorAll('#filters-gallery img').length > 0")
    images_loaded(page)
    spread = page.eval_on_selector_all("#filters-gallery img", """im => im.map(i => {
        const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let k = 0; k < d.length; k += 4) { if (Math.abs(d[k] - d[k + 2]) > 60) n += 1; }
        return [i.getBoundingClientRect().width, n / (d.length / 4)]; })""")
    for width, coloured in spread:  # the kernels are drawn red (> 0) and blue (< 0); a title alone is black on white
        assert width >= 150 and coloured > 0.05, f"a filter panel is small or has no kernels: {spread}"
    shot(page, "filters")


# ---------------------------------------------------------------------------------------------- no truncated names
def test_example_dropdowns_show_the_whole_file_name(page, app_url):
    """Every tab's example dropdown shows the file name and its true label, whole, at 1366 px — not the id
    ("PNEUMONIA/…") and not cut at the box's edge. (Last in the file: opening the Trust tab runs its checks.)"""
    page.goto(app_url)
    page.locator("#classify-decision").get_by_text("threshold").wait_for()
    cut = []
    for tab in ("Classify", "Heatmaps", "Feature maps", "Trust"):
        open_tab(page, tab)
        box = page.get_by_label(EXAMPLE_LABEL, exact=True).locator("visible=true").first
        box.wait_for()
        value, scroll, client = box.evaluate("e => [e.value, e.scrollWidth, e.clientWidth]")
        assert value == example_label(EXAMPLE) and not value.startswith("PNEUMONIA/"), f"{tab}: {value!r}"
        if scroll > client:
            cut.append(f"{tab}: {value!r} needs {scroll} px, the box shows {client} px")
    assert not cut, f"example names cut at 1366 px: {cut}"
