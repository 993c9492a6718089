"""The pack in the real ComfyUI frontend, in headless Chromium: node library, shipped workflows, a queued run.

What a user sees and the HTTP API cannot show: the frontend finds the pack's nodes, opens every shipped workflow
(from its template browser, as a user would) without a missing-nodes notice, and plays the video a queued
text-to-video run produces. Chromium and chromedriver come from the distribution (`make browser-deps`); without them
the module is skipped, except where ALCM_REQUIRE_BROWSER=1 (CI) makes that a failure. Screenshots, and on failure the
console log, go to $ALCM_ARTIFACT_DIR (default .dev/artifacts).
"""

import json
import urllib.parse

import av
import pytest

from animatelcm.devkit import browser as chromium
from animatelcm.devkit.server import PACK_FOLDER
from animatelcm.devkit.workflows import WORKFLOWS as WORKFLOWS_DIR
from animatelcm.devkit.workflows import api_twin, strip_meta, ui_workflows

from .conftest import SIZE

WORKFLOWS = ui_workflows()
TEXT_TO_VIDEO = WORKFLOWS_DIR / "animatelcm_text_to_video.json"
MISSING = chromium.missing()
RUN_TIMEOUT = 900  # seconds: 4 steps of 8 frames on a shared CPU, plus model loading

pytestmark = pytest.mark.skipif(MISSING is not None and not chromium.browser_required(),
                                reason=f"browser test: {MISSING}")

# The frontend's own identifiers, which its Playwright suite relies on too: data-testid attributes, sidebar tab
# buttons named `<tab id>-tab-button`, dialogs labelled by their dialog-store key, ARIA roles. Where the frontend of
# ComfyUI 0.3.75 (1.30) and that of 0.33.0 (1.48) differ, a selector lists both: the old one first.
QUEUE_BUTTON = "[data-testid='queue-button']"
NODE_LIBRARY_TAB = ".node-library-tab-button"
NODE_LIBRARY_SEARCH = "input.search-box-input, input[role='combobox'][placeholder='Search...']"
NODE_LIBRARY_LABELS = ".node-lib-node-container .node-label, [role='treeitem'] > span"
TEMPLATES_TAB = ".templates-tab-button"
TEMPLATE_DIALOG = "[role='dialog'][aria-labelledby='global-workflow-template-selector']"
# 1.30 opens a missing-nodes dialog; 1.48 lists missing nodes in its errors panel and shows the error overlay.
MISSING_NODES_SHOWN = "[role='dialog'][aria-labelledby='global-missing-nodes'], [data-testid='error-overlay']"
CLOSE_MISSING_NODES = "button[aria-label='Close'], [data-testid='error-overlay-dismiss']"
ANY_DIALOG = "[role='dialog'], [data-testid='error-overlay']"

# Ready: the app object exists, its node definitions (fetched from /object_info) include the pack's, the canvas is
# mounted and the start-up workflow is open, so nothing we load is replaced by a late start-up load.
READY_JS = """
const app = window.app;
return !!(app && app.vueAppReady && app.graph && app.canvas && document.querySelector('#graph-canvas')
          && window.LiteGraph?.registered_node_types?.ALCM_KSampler
          && app.extensionManager?.workflow?.activeWorkflow && !app.extensionManager.spinner
          && document.querySelector("[data-testid='queue-button']"));
"""
# Counts finished graph loads (from any path: template browser, file, JS) and records the node types the frontend
# reported missing (1.30: through app.showMissingNodesError; 1.48: in its `missingNodesError` store), and the run
# errors the server sent: exact signals to wait on instead of sleeping.
HOOKS_JS = """
if (!window.__alcm) {
  const state = window.__alcm = {loads: 0, missing: [], errors: []};
  state.missingTypes = () => {
    const pinia = document.querySelector('#vue-app')?.__vue_app__?.config.globalProperties.$pinia;
    const listed = pinia?._s.get('missingNodesError')?.missingNodesError?.nodeTypes ?? [];
    const named = [...state.missing, ...listed.map(t => typeof t === 'string' ? t : t.type)];
    return [...new Set(named)];
  };
  const load = app.loadGraphData;
  app.loadGraphData = async function (...args) {
    try { return await load.apply(this, args); } finally { state.loads++; }
  };
  const showMissing = app.showMissingNodesError;
  app.showMissingNodesError = function (types) {
    state.missing.push(...types.map(t => typeof t === 'string' ? t : t.type));
    return showMissing.apply(this, arguments);
  };
  app.api.addEventListener('execution_error', e => state.errors.push(e.detail));
  state.previews = [];  // the preview images the frontend received while sampling (Blobs)
  app.api.addEventListener('b_preview', e => state.previews.push(e.detail));
}
"""
# Frame counts of the animated PNGs among the previews received (the acTL chunk's first field).
ANIMATED_PREVIEWS_JS = """
const counts = [];
for (const blob of window.__alcm.previews.filter(b => b.type === 'image/png')) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  for (let i = 8; i + 12 <= bytes.length; i++) {
    if (bytes[i] === 0x61 && bytes[i + 1] === 0x63 && bytes[i + 2] === 0x54 && bytes[i + 3] === 0x4c) {  // acTL
      counts.push(new DataView(bytes.buffer).getUint32(i + 4));
      break;
    }
  }
}
return counts;
"""
GRAPH_TYPES_JS = "return app.graph.nodes.map(n => n.type).sort()"
# The start-up workflow is replaced by an empty graph before each test: 1.48 checks the start-up workflow's model files
# in the background and would report its missing ones (models this server does not have) over whatever a test opens
# next. skipAssetScans stops that check; 1.30 ignores the option.
EMPTY_GRAPH_JS = """
return app.loadGraphData({last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [], version: 0.4},
                         true, true, null, {skipAssetScans: true});
"""


@pytest.fixture(scope="session")
def browser():
    if MISSING:
        pytest.fail(f"ALCM_REQUIRE_BROWSER is set but the browser test cannot run: {MISSING}")
    b = chromium.Browser()
    yield b
    b.stop()


@pytest.fixture
def page(browser, server, request):
    """The frontend freshly opened on the test server; a screenshot and the console log are saved if the test fails."""
    failed_before = request.session.testsfailed
    # A new user gets the template browser popped up at start-up, at a moment of its own choosing: mark the
    # tutorial done so the page opens on a plain graph and the tests open dialogs themselves.
    server.post("/settings/Comfy.TutorialCompleted", True)
    browser.console_log()  # drop the previous test's messages
    try:
        browser.driver.get(server.url)
        browser.wait(lambda d: d.execute_script(READY_JS), 240, "the ComfyUI frontend did not get ready")
        browser.js(EMPTY_GRAPH_JS)
        browser.js(HOOKS_JS)
    except Exception:
        browser.save_failure_artifacts(request.node.name, server.log_tail(80))
        raise
    yield browser
    if request.session.testsfailed > failed_before:
        browser.save_failure_artifacts(request.node.name, server.log_tail(80))


def test_node_library_lists_every_pack_node(page, server):
    """Each node the pack registers is found by its display name in the Node Library's search (one search per node:
    the result list is cut to the best matches, so one search for "ALCM" does not show all of them)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    pack_nodes = {name: info["display_name"] for name, info in server.get("/object_info").items()
                  if name.startswith("ALCM_")}
    assert len(pack_nodes) >= 5, pack_nodes  # the assertions below must not pass on an empty list

    page.wait(ec.element_to_be_clickable((By.CSS_SELECTOR, NODE_LIBRARY_TAB)), 30, "no Node Library tab").click()
    search = page.wait(ec.element_to_be_clickable((By.CSS_SELECTOR, NODE_LIBRARY_SEARCH)), 30,
                       "no search box in the Node Library")
    for name in sorted(pack_nodes.values()):
        search.click()
        search.send_keys(Keys.CONTROL, "a")
        search.send_keys(Keys.BACKSPACE)
        search.send_keys(name)

        def shown(driver):
            return name in {e.text.strip() for e in driver.find_elements(By.CSS_SELECTOR, NODE_LIBRARY_LABELS)}

        try:
            page.wait(shown, 30, "")
        except TimeoutException:
            labels = sorted({e.text.strip() for e in page.driver.find_elements(By.CSS_SELECTOR, NODE_LIBRARY_LABELS)})
            pytest.fail(f"the Node Library search for {name!r} does not show it; it shows {labels}")


def test_missing_nodes_dialog_is_detected(page):
    """Guard for the workflow test: an unknown node type does raise the dialog it looks for (no vacuous pass)."""
    workflow = json.loads(TEXT_TO_VIDEO.read_text())
    workflow["nodes"][0]["type"] = "ALCM_NoSuchNode"
    _load_graph(page, workflow)
    assert page.js("return window.__alcm.missingTypes()") == ["ALCM_NoSuchNode"]
    texts = page.wait(lambda d: _texts(d, MISSING_NODES_SHOWN), 30, "nothing tells the user about an unknown node type")
    if texts[0][0] == "dialog":  # 1.48's overlay counts errors; its panel names them
        assert "missing nodes" in texts[0][1].lower() and "ALCM_NoSuchNode" in texts[0][1], texts

    def closed(driver) -> bool:
        """Clicks the notice's close button until it is gone (the frontend may re-render it under the click)."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        notice = _displayed(driver, MISSING_NODES_SHOWN)
        if notice is None:
            return True
        try:
            notice.find_element("css selector", CLOSE_MISSING_NODES).click()
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        return False

    page.wait(closed, 30, "the missing-nodes notice did not close")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_opens_from_the_template_browser(page, server, path):
    """Each workflows/*.json is listed under the pack in the template browser and opens with every node known."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    workflow = json.loads(path.read_text())
    loads = page.js("return window.__alcm.loads")
    page.wait(ec.element_to_be_clickable((By.CSS_SELECTOR, TEMPLATES_TAB)), 30, "no Templates tab").click()
    page.wait(_visible(TEMPLATE_DIALOG), 30, "the template browser did not open")
    # The pack's workflows are listed under its folder name in the EXTENSIONS part of the navigation.
    pack_entry = (By.XPATH, f"//*[@role='dialog']//*[@role='button'][normalize-space(.)='{PACK_FOLDER}']")
    page.wait(ec.element_to_be_clickable(pack_entry), 30, f"no {PACK_FOLDER} entry in the template browser").click()
    card = (By.CSS_SELECTOR, f"[data-testid='template-workflow-{path.stem}']")
    page.wait(ec.element_to_be_clickable(card), 30, f"no {path.stem} card under {PACK_FOLDER}").click()
    page.wait(lambda d: d.execute_script("return window.__alcm.loads") > loads, 60, f"{path.name} did not load")
    page.wait(lambda d: not _displayed(d, TEMPLATE_DIALOG), 30, "the template browser did not close")

    assert page.js("return window.__alcm.missingTypes()") == [], "the frontend reported missing nodes"
    assert page.js(GRAPH_TYPES_JS) == sorted(n["type"] for n in workflow["nodes"])
    _assert_no_dialog_appears(page)
    # What the Run button would send is exactly the shipped API twin: every widget value landed where it belongs.
    # (Less what the server ignores: the frontend also sends its own preview widgets, e.g. `video-preview`.)
    sent = page.js("return app.graphToPrompt().then(p => p.output)")  # WebDriver waits for the promise
    info = server.get("/object_info")
    for node in sent.values():
        declared = info[node["class_type"]]["input"]
        node["inputs"] = {name: value for name, value in node["inputs"].items()
                          if name in declared["required"] or name in declared.get("optional", {})}
    assert strip_meta(sent) == strip_meta(api_twin(path))


def test_text_to_video_run_plays_in_the_browser(page, server):
    """Queued with the Run button, the text-to-video workflow's output node shows an H.264 mp4 Chromium plays."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    workflow = json.loads(TEXT_TO_VIDEO.read_text())
    _load_graph(page, workflow)
    assert page.js("return window.__alcm.missingTypes()") == []
    sizes = page.js("""
        const node = app.graph.nodes.find(n => n.type === 'EmptyLatentImage');
        for (const [name, value] of [['width', arguments[0]], ['height', arguments[0]], ['batch_size', 8]]) {
          const widget = node.widgets.find(w => w.name === name);
          widget.value = value;
          widget.callback?.(value);
        }
        app.graph.setDirtyCanvas(true, true);
        return Object.fromEntries(node.widgets.map(w => [w.name, w.value]));""", SIZE)
    assert sizes == {"width": SIZE, "height": SIZE, "batch_size": 8}
    output_format = page.js("""
        const node = app.graph.nodes.find(n => /SaveVideo$/.test(n.type));
        return node.widgets.find(w => w.name === 'format')?.value ?? 'mp4';""")
    tag = "img" if output_format in ("gif", "webp") else "video"
    before = page.js("return [...document.querySelectorAll('video, img')].map(e => e.src)")

    page.wait(ec.element_to_be_clickable((By.CSS_SELECTOR, QUEUE_BUTTON)), 30, "no Run button").click()

    def preview(driver):
        """The new preview the output node shows, once it has a frame to show (None while it has not)."""
        errors = driver.execute_script("return window.__alcm.errors")
        assert not errors, f"the run failed: {chromium.dumps(errors)}\n{server.log_tail()}"
        return driver.execute_script("""
            const [tag, before] = arguments;
            for (const e of document.querySelectorAll(tag)) {
              if (!/\\/view\\?/.test(e.src) || before.includes(e.src)) continue;
              if (tag === 'video' && e.readyState >= 2)  // HAVE_CURRENT_DATA: a frame is decoded
                return {src: e.src, readyState: e.readyState, width: e.videoWidth, height: e.videoHeight,
                        duration: e.duration};
              if (tag === 'img' && e.complete && e.naturalWidth > 0)
                return {src: e.src, readyState: 4, width: e.naturalWidth, height: e.naturalHeight};
              if (tag === 'video' && e.error) return {src: e.src, error: e.error.code, message: e.error.message};
            }
            return null;""", tag, before)

    shown = page.wait(preview, RUN_TIMEOUT, f"no playable <{tag}> preview within {RUN_TIMEOUT} s", poll=2)
    codecs = page.js("""const v = document.createElement('video');
        return {canPlay: v.canPlayType('video/mp4; codecs="avc1.42E01E"'),
                mediaSource: window.MediaSource?.isTypeSupported('video/mp4; codecs="avc1.42E01E"')};""")
    assert "error" not in shown, f"Chromium could not play {shown}; its H.264 support: {codecs}"
    assert shown["readyState"] >= 2 and (shown["width"], shown["height"]) == (SIZE, SIZE), shown
    query = urllib.parse.parse_qs(urllib.parse.urlparse(shown["src"]).query)
    output = server.output_dir / query.get("subfolder", [""])[0] / query["filename"][0]
    assert output.is_file(), shown["src"]
    # While it sampled, the frontend got the whole clip as an animated preview at each of the 4 steps.
    assert page.js("return (async () => {" + ANIMATED_PREVIEWS_JS + "})()") == [8, 8, 8, 8]
    if output.suffix == ".mp4":
        with av.open(str(output)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            # The frontend sent the UI graph along; it is inside the file, so dropping the mp4 loads it again.
            saved = json.loads(container.metadata["workflow"])
            assert sorted(n["type"] for n in saved["nodes"]) == sorted(n["type"] for n in workflow["nodes"])

    # Bring the output node into view, then keep the picture as an artifact.
    page.js("""
        const node = app.graph.nodes.find(n => /SaveVideo$/.test(n.type));
        app.canvas.centerOnNode(node);
        app.canvas.setDirty(true, true);""")
    page.wait(lambda d: d.execute_script("""
        const r = [...document.querySelectorAll(arguments[0])].find(e => e.src === arguments[1])?.getBoundingClientRect();
        return r && r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight;""",
                                          tag, shown["src"]), 30, "the preview did not scroll into view")
    screenshot = page.screenshot("text_to_video")
    assert chromium.is_png(screenshot), screenshot


def test_a_workflow_saved_before_the_newer_optional_widgets_opens_with_their_defaults(page):
    """ALCM_ApplyMotionModel gained start/end percent, ALCM_SaveVideo save_output and ALCM_LoadVideo path, all
    optional widgets at the end: a graph saved with the former widget values opens with those kept and the new ones
    at their defaults, and queues as such."""
    workflow = json.loads(TEXT_TO_VIDEO.read_text())
    apply = next(n for n in workflow["nodes"] if n["type"] == "ALCM_ApplyMotionModel")
    apply["widgets_values"] = [0.8, "linear"]
    save = next(n for n in workflow["nodes"] if n["type"] == "ALCM_SaveVideo")
    save["widgets_values"] = save["widgets_values"][:7] + [4]  # up to filename_prefix, then decode_chunk 4
    _load_graph(page, workflow)
    prompt = page.js("return app.graphToPrompt().then(p => p.output)")
    inputs = prompt[str(apply["id"])]["inputs"]
    assert {k: inputs.get(k) for k in ("motion_scale", "beta_schedule", "start_percent", "end_percent")} == {
        "motion_scale": 0.8, "beta_schedule": "linear", "start_percent": 0.0, "end_percent": 1.0}
    saved = prompt[str(save["id"])]["inputs"]
    assert saved["filename_prefix"] == save["widgets_values"][6] and saved["decode_chunk"] == 4
    assert saved["save_output"] is True
    workflow = json.loads((WORKFLOWS_DIR / "animatelcm_video_to_video.json").read_text())
    load = next(n for n in workflow["nodes"] if n["type"] == "ALCM_LoadVideo")
    load["widgets_values"] = load["widgets_values"][:8]  # before the optional path
    _load_graph(page, workflow)
    inputs = page.js("return app.graphToPrompt().then(p => p.output)")[str(load["id"])]["inputs"]
    assert [inputs[k] for k in ("video", "frame_load_cap", "custom_width", "multiple_of_8", "path")] == [
        load["widgets_values"][0], load["widgets_values"][1], load["widgets_values"][5], True, ""]


def test_a_gif_is_uploaded_through_the_loaders_upload_button_and_loads(page, server, tmp_path):
    """The frontend's own video upload takes mp4 and webm only; the pack's button on its loaders takes gif too: the
    file reaches the input folder, the node picks it, and the queued graph loads its frames."""
    from PIL import Image

    gif = tmp_path / "moving.gif"
    frames = [Image.new("RGB", (40, 24), (60 * i, 100, 200 - 40 * i)) for i in range(5)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=125, loop=0)
    workflow = json.loads((WORKFLOWS_DIR / "animatelcm_video_to_video.json").read_text())
    _load_graph(page, workflow)
    button = page.js("""const node = app.graph.nodes.find(n => n.type === 'ALCM_LoadVideo');
        const button = node.widgets.find(w => w.type === 'button' && /gif/.test(w.name));
        button.callback();  // what a click on it does: opens the file chooser
        return button.name;""")
    assert button == "upload any video, gif or webp"
    chooser = page.driver.find_element("css selector", "input[data-alcm-upload='ALCM_LoadVideo']")
    assert ".gif" in chooser.get_attribute("accept").split(",")
    chooser.send_keys(str(gif))  # the file picked in the chooser
    chosen = lambda d: d.execute_script(  # noqa: E731
        "return app.graph.nodes.find(n => n.type === 'ALCM_LoadVideo').widgets.find(w => w.name === 'video').value")
    page.wait(lambda d: chosen(d) == "moving.gif", 30, "the uploaded gif was not chosen in the node")
    assert (server.base_dir / "input" / "moving.gif").read_bytes() == gif.read_bytes()
    prompt = page.js("return app.graphToPrompt().then(p => p.output)")
    load = next(node_id for node_id, node in prompt.items() if node["class_type"] == "ALCM_LoadVideo")
    assert prompt[load]["inputs"]["video"] == "moving.gif"
    run = {"load": {"class_type": "ALCM_LoadVideo", "inputs": {**prompt[load]["inputs"], "frame_load_cap": 0,
                                                                "custom_width": 0, "force_rate": 0.0}},
           "save": {"class_type": "SaveImage", "inputs": {"images": ["load", 0], "filename_prefix": "e2e/gif"}}}
    assert len(server.run(run)["outputs"]["save"]["images"]) == 5


# -- helpers ------------------------------------------------------------------------------------------------------
def _load_graph(page, workflow: dict) -> None:
    """Open a UI-format workflow the way a dropped file is opened (app.loadGraphData), and wait for it."""
    page.js("return app.loadGraphData(arguments[0])", workflow)  # WebDriver waits for the returned promise
    assert page.js(GRAPH_TYPES_JS) == sorted(n["type"] for n in workflow["nodes"])


def _displayed(driver, css: str):
    """The first element matching `css` that is shown; one the frontend removes while we look counts as not shown."""
    from selenium.common.exceptions import StaleElementReferenceException

    for element in driver.find_elements("css selector", css):
        try:
            if element.is_displayed():
                return element
        except StaleElementReferenceException:
            continue
    return None


def _texts(driver, css: str) -> list[tuple[str, str]]:
    """(role, text) of each shown element matching `css`, read in one script so a re-render cannot come between."""
    return driver.execute_script("""
        return [...document.querySelectorAll(arguments[0])].filter(e => e.getClientRects().length > 0)
            .map(e => [e.getAttribute('role') || '', e.innerText]);""", css)


def _visible(css: str):
    return lambda driver: _displayed(driver, css)


def _assert_no_dialog_appears(page, seconds: float = 3) -> None:
    """No dialog (missing nodes, missing models, an error) opens after a load; a dialog renders on the next frames,
    well within `seconds` (the missing-nodes guard test, whole, takes under a second)."""
    from selenium.common.exceptions import TimeoutException

    try:
        dialog = page.wait(_visible(ANY_DIALOG), seconds, "")
    except TimeoutException:
        return
    pytest.fail(f"a dialog opened: {dialog.get_attribute('aria-labelledby') or dialog.get_attribute('data-testid')}: "
                f"{dialog.text}")
