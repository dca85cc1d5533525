"""The example workflows in ComfyUI's real frontend, in headless Chromium (Debian's /usr/bin/chromium driven by
Playwright's Python package; no browser is ever downloaded).

A ComfyUI server runs with this working tree installed (symlink in a temporary custom_nodes/). For each
workflow, loaded with the frontend's own `app.loadGraphData`: no missing-node / missing-model / error overlay
or dialog appears and no page error is thrown; every node type is registered in the frontend; the pack's nodes
render with their widgets (names and values as in the file); and the frontend's own `app.graphToPrompt()`
gives exactly the API prompt that tests/test_workflows.py validates with ComfyUI; every node and group is in
view (on the window, under none of the frontend's own UI) when the file is opened, at the screenshot size and at
1920x1080, and when it is opened from ComfyUI's template browser, which lists the workflows by title with their
thumbnails. The node search box finds the pack by what people type. Control runs show that a broken workflow
does raise the error overlay and that a node under the side toolbar is reported.

Screenshots (cropped to the graph) go to tests/artifacts/screenshots/. With CA_UPDATE_SCREENSHOTS=1 they
also replace docs/screenshots/<workflow>.png and the thumbnails workflows/<workflow>.png and .jpg.
Chromium and Playwright are installed by .ci/setup_browser.sh (CI runs it first); without them the tests skip
and say how to install them (under CI=true a skip fails the run).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

import comfy_server
import workflow_tools as wt

pytestmark = [pytest.mark.host, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 2400, "height": 1350}
ARTIFACTS = wt.REPO / "tests" / "artifacts" / "screenshots"
SCREENSHOTS = wt.REPO / "docs" / "screenshots"
UPDATE = os.environ.get("CA_UPDATE_SCREENSHOTS") == "1"
FILES = wt.workflow_files()
IDS = [p.stem for p in FILES]

# Anything that tells the user something went wrong while loading a workflow.
ERROR_UI = ", ".join([
    "[data-testid='error-overlay']",  # 'N ERRORS': missing nodes / missing models / load errors
    ".p-dialog",  # any modal dialog (the older missing-nodes / missing-models dialogs)
    "[role='dialog']",
    ".p-toast-message-error",
])


def have_browser() -> str | None:
    """None when Chromium and Playwright are usable, else what is missing."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(CHROMIUM)
    try:
        importlib.invalidate_caches()
        importlib.import_module("playwright.sync_api")
    except ImportError:
        missing.append("the playwright Python package")
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def browser_ready():
    missing = have_browser()
    if missing:  # the tests never install anything themselves; CI runs the script before them
        pytest.skip(f"{missing} missing: run `bash .ci/setup_browser.sh {sys.prefix}` to install them")


@pytest.fixture(scope="module")
def server(browser_ready, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-browser")
    comfy_server.prepare_base_dir(base, pack_source="symlink")
    with comfy_server.running_comfyui(base) as (url, log_path):
        yield url, log_path


@pytest.fixture(scope="module")
def object_info(server):
    url, _ = server
    return comfy_server.object_info_classes(url)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    url, _ = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            pg = context.new_page()
            pg.page_errors = []
            pg.on("pageerror", lambda exc: pg.page_errors.append(str(exc)))
            pg.goto(url + "/", wait_until="domcontentloaded", timeout=60_000)
            pg.wait_for_function("window.app && window.app.vueAppReady && window.app.graph && window.LiteGraph",
                                 timeout=90_000)
            pg.wait_for_timeout(1500)  # first-load extensions and the default graph settle
            assert pg.page_errors == [], pg.page_errors
            yield pg
        finally:
            browser.close()


def load_workflow(page, workflow: dict, name: str):
    """Opens the workflow as a dropped or opened file is: with the view (offset, zoom) stored in it."""
    page.page_errors.clear()
    page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name) }", [workflow, name])
    page.wait_for_timeout(1500)  # missing-model checks and image previews are asynchronous


def hidden_parts(page) -> list[str]:
    """Nodes and groups not wholly in view: a point of one (every 12 px, title bar included) that is off the
    window or under the frontend's own UI (side toolbar, tabs, Run button, canvas controls, dialogs). Points
    on the canvas or on a node's DOM widget (text boxes, notes) are in view."""
    return page.evaluate("""() => {
        const canvas = app.canvas.canvas, ds = app.canvas.ds, rect = canvas.getBoundingClientRect();
        const items = app.graph._nodes.map(n => [`node #${n.id} ${n.title}`, n.boundingRect])
            .concat(app.graph._groups.map(g => [`group ${g.title}`, g._bounding || g.bounding]));
        const hidden = [];
        for (const [name, b] of items) {
            const [x0, y0] = ds.convertOffsetToCanvas([b[0], b[1]]);
            const [x1, y1] = ds.convertOffsetToCanvas([b[0] + b[2], b[1] + b[3]]);
            const nx = Math.max(1, Math.ceil((x1 - x0) / 12)), ny = Math.max(1, Math.ceil((y1 - y0) / 12));
            let problem = null;
            for (let i = 0; i <= nx && !problem; i++) for (let j = 0; j <= ny && !problem; j++) {
                const x = rect.left + x0 + 1 + (x1 - x0 - 2) * i / nx;
                const y = rect.top + y0 + 1 + (y1 - y0 - 2) * j / ny;
                const el = document.elementFromPoint(x, y);
                if (el === canvas || (el && el.closest('.dom-widget'))) continue;
                const chain = [];  // the covering element and its ancestors, by their first class
                for (let e = el; e && chain.length < 6; e = e.parentElement) {
                    chain.push(String(e.className).split(' ')[0]);
                }
                const what = el ? `under ${chain.filter(c => c).join(' < ')}` : 'off the window';
                problem = `${name}: (${Math.round(x)}, ${Math.round(y)}) is ${what}`;
            }
            if (problem) hidden.push(problem);
        }
        return hidden;
    }""")


# Window sizes in which every workflow must open with all of it in view: the one of these tests, and a common one.
VIEW_SIZES = [VIEWPORT, {"width": 1920, "height": 1080}]


def visible_errors(page) -> list[str]:
    return page.evaluate("""(sel) => Array.from(document.querySelectorAll(sel))
        .filter(e => e.offsetParent !== null || getComputedStyle(e).position === 'fixed')
        .map(e => e.innerText.trim().slice(0, 300))""", ERROR_UI)


def graph_clip(page) -> dict:
    """The screen rectangle of all nodes and groups, with a margin."""
    return page.evaluate("""() => {
        const ds = app.canvas.ds, rect = app.canvas.canvas.getBoundingClientRect();
        let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        const add = (x, y, w, h) => { x0 = Math.min(x0, x); y0 = Math.min(y0, y);
                                      x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h); };
        for (const n of app.graph._nodes) add(n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, n.size[0],
                                              n.size[1] + LiteGraph.NODE_TITLE_HEIGHT);
        for (const g of app.graph._groups) { const b = g._bounding || g.bounding; add(b[0], b[1], b[2], b[3]); }
        const a = ds.convertOffsetToCanvas([x0, y0]), b = ds.convertOffsetToCanvas([x1, y1]);
        const m = 16;
        const left = Math.max(rect.left, rect.left + a[0] - m), top = Math.max(rect.top, rect.top + a[1] - m);
        const right = Math.min(rect.right, rect.left + b[0] + m), bottom = Math.min(rect.bottom, rect.top + b[1] + m);
        return {x: left, y: top, width: right - left, height: bottom - top};
    }""")


def save_screenshots(page, name: str) -> Path:
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(shot), clip=graph_clip(page))
    if UPDATE:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / f"{name}.png")
        image = Image.open(shot).convert("RGB")
        thumb = image.copy()
        thumb.thumbnail((640, 640), Image.LANCZOS)
        thumb.save(wt.WORKFLOWS / f"{name}.png", optimize=True)
        thumb.save(wt.WORKFLOWS / f"{name}.jpg", quality=88, optimize=True)
    return shot


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_workflow_loads_in_the_frontend(page, object_info, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    load_workflow(page, workflow, path.stem)

    assert visible_errors(page) == [], "the frontend reported errors on load"
    assert page.page_errors == [], page.page_errors
    for size in reversed(VIEW_SIZES):  # ends at the size of the screenshots
        page.set_viewport_size(size)
        load_workflow(page, workflow, path.stem)
        assert hidden_parts(page) == [], f"not all in view at {size['width']}x{size['height']}"

    state = page.evaluate("""() => app.graph._nodes.map(n => ({
        id: n.id, type: n.type, title: n.title, registered: !!LiteGraph.registered_node_types[n.type],
        module: n.constructor.nodeData?.python_module ?? null,
        widgets: (n.widgets || []).map(w => [w.name, w.value]), size: [n.size[0], n.size[1]]}))""")
    assert sorted(n["id"] for n in state) == sorted(n["id"] for n in workflow["nodes"])
    unregistered = [n["type"] for n in state if not n["registered"]]
    assert not unregistered, f"node types unknown to the frontend: {unregistered}"

    by_id = {n["id"]: n for n in workflow["nodes"]}
    for node in state:
        if node["type"] not in wt.PACK_NODE_IDS:
            continue
        cls = object_info[node["type"]]
        assert node["module"] == f"custom_nodes.{wt.PACK_DIR_NAME}"
        expected = wt.widget_values(by_id[node["id"]], cls)
        shown = {name: value for name, value in node["widgets"]}
        assert list(shown) == [s for s in wt.widget_slots(cls) if s is not None], f"{node['type']} widgets"
        assert shown == expected, f"{node['type']} #{node['id']}: widget values differ from the file"
        assert by_id[node["id"]].get("title") or node["title"] == cls.info["display_name"]
        assert node["size"][0] > 100 and node["size"][1] > 20

    frontend_prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    ours = wt.ui_to_api(workflow, object_info)
    strip = lambda prompt: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
    assert strip(frontend_prompt) == strip(ours), "the frontend's API prompt differs from the validated one"

    shot = save_screenshots(page, path.stem)
    assert shot.stat().st_size > 10_000


def open_pack_templates(page):
    """ComfyUI's template browser, at the pack's own category (under Extensions). The category is named after
    the pack's folder; locales/en/main.json gives it the pack's display name."""
    page.evaluate("async () => { await app.extensionManager.command.execute('Comfy.BrowseTemplates') }")
    page.get_by_text(wt.DISPLAY_NAME, exact=True).first.click(timeout=20_000)


def template_card(page, name: str):
    return page.locator(f"[data-testid='template-workflow-{name}']")


def test_template_browser_shows_the_workflows(page):
    """ComfyUI's template browser lists the pack's workflows (served from workflows/) with their thumbnails,
    titled by their file names (the only title and description ComfyUI 0.25 / frontend 1.45 shows for them)."""
    thumbnails = {}
    prefix = f"/api/workflow_templates/{wt.PACK_DIR_NAME}/"

    def on_response(response):
        if prefix in response.url and response.url.endswith(".jpg"):
            name = unquote(response.url.rsplit("/", 1)[1][:-4])
            thumbnails[name] = (response.status, response.headers.get("content-type"))

    page.on("response", on_response)
    try:
        open_pack_templates(page)
        for name in IDS:
            card = template_card(page, name)
            card.wait_for(timeout=20_000)
            card.scroll_into_view_if_needed()  # the browser loads a card's thumbnail once it is in view
            assert card.locator("h3").inner_text() == name
            assert card.locator("p").first.inner_text() == " ".join(name.replace("-", " ").split())
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                                   arg=card.locator("img").first.element_handle(timeout=20_000), timeout=20_000)
        deadline = time.monotonic() + 20
        while set(thumbnails) < set(IDS) and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        assert set(thumbnails) >= set(IDS), f"thumbnails requested: {sorted(thumbnails)}"
        assert all(status == 200 and "image/jpeg" in (ctype or "") for status, ctype in thumbnails.values()), thumbnails
    finally:
        page.remove_listener("response", on_response)
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_template_opens_with_every_node_in_view(page, path):
    """Opened from the template browser (which fits the view to the nodes itself), every node is in view."""
    count = len(json.loads(path.read_text(encoding="utf-8"))["nodes"])
    page.set_viewport_size(VIEWPORT)
    load_workflow(page, {"nodes": [], "links": [], "groups": [], "version": 0.4}, "empty")
    open_pack_templates(page)
    template_card(page, path.stem).click(timeout=20_000)
    page.wait_for_function("(n) => app.graph._nodes.length === n", arg=count, timeout=20_000)
    page.locator("[role=dialog]").first.wait_for(state="detached", timeout=10_000)
    page.wait_for_timeout(1000)
    assert visible_errors(page) == [], "the frontend reported errors on load"
    assert hidden_parts(page) == []


@pytest.mark.parametrize("words", ["segment", "mask from text", "attention mask", "concept"])
def test_node_search_finds_the_pack(page, object_info, words):
    """What people type into the node search box (double-click on the canvas) lists the pack's nodes."""
    page.evaluate("async () => { await app.extensionManager.command.execute('Workspace.SearchBox.Toggle') }")
    try:
        search = page.locator(".p-dialog input").first
        search.wait_for(timeout=10_000)
        search.fill(words)
        names = {object_info[node_id].info["display_name"] for node_id in wt.PACK_NODE_IDS}
        page.wait_for_function("""(names) => {
            const lines = new Set(document.querySelector('.p-dialog').innerText.split('\\n').map(l => l.trim()));
            return names.every(n => lines.has(n));
        }""", arg=sorted(names), timeout=10_000)
    finally:
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)


def test_a_broken_workflow_is_reported(page):
    """Control: the same checks do see the frontend's error overlay for an unknown node and a missing model."""
    workflow = json.loads((wt.WORKFLOWS / "Flux - masks while generating.json").read_text(encoding="utf-8"))
    workflow["nodes"][0]["type"] = "NoSuchNodeFromAMissingPack"
    clip = next(n for n in workflow["nodes"] if n["type"] == "DualCLIPLoader")
    clip["widgets_values"][0] = "not_downloaded.safetensors"
    load_workflow(page, workflow, "broken")
    deadline = time.monotonic() + 10
    while not visible_errors(page) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    errors = " ".join(visible_errors(page)).lower()
    assert "missing" in errors, f"no error overlay for a broken workflow: {errors!r}"


def test_a_node_out_of_view_is_reported(page):
    """Control: with the view the workflows had before (graph origin under the side toolbar and the tabs), the
    check names nodes under the frontend's UI."""
    workflow = json.loads((wt.WORKFLOWS / "Flux - masks while generating.json").read_text(encoding="utf-8"))
    workflow["extra"]["ds"] = {"scale": 0.6, "offset": [60, 120]}
    page.set_viewport_size(VIEWPORT)
    load_workflow(page, workflow, "out_of_view")
    hidden = "\n".join(hidden_parts(page))
    assert "Load Diffusion Model: " in hidden and "side-toolbar" in hidden, hidden
    assert "workflow-tab" in hidden, hidden
