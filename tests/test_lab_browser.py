"""Every notebook works for a person: real JupyterLab in headless Chromium runs it, nothing red is printed, and
every control of every explorer redraws its figure.

One test per notebooks/*.ipynb (found at collection time, so a new notebook is covered by itself); under
`pytest -n 2` the notebooks spread over the workers. Per worker, one JupyterLab serves a temporary copy of
notebooks/ (data/ linked beside it, read-only use) with temporary settings/workspace/runtime dirs (nothing of
the user's is touched), and one Chromium (Debian's /usr/bin/chromium, never a downloaded browser) is driven by
Playwright. Each test:
1. opens its notebook and runs all cells (its own `parameters` defaults: CI-sized);
2. fails on any cell that did not run, any traceback or error output, and anything printed to stderr (warnings
   included);
3. checks that every widget box with controls shows a drawn figure, then finds every explorer (an ipywidgets box
   holding controls and a live plotly figure), moves every slider, checkbox and dropdown option at least once
   (controls that appear only for some dropdown value included), and checks after each move that the figure
   changed;
4. checks again that nothing was printed to stderr while the widgets redrew, and that the page threw no uncaught
   error. Each move's time (from the key press until the new figure has held still for 300 ms) is recorded.
Screenshots of the notebook and of every figure go to tmp_path, and also to $LONGLAB_BROWSER_ARTIFACTS/NOTEBOOK/
when that is set (for looking at the figures at JupyterLab's output width). Skips with the reason when Chromium
or Playwright is missing. The server, its kernels and the browser are always shut down.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("."))
CHROMIUM = Path(os.environ.get("LONGLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# 1180 px window, file browser collapsed: the output area is 1000 px wide, what JupyterLab typically gives a cell.
VIEWPORT = {"width": 1180, "height": 1000}
RUN_TIMEOUT_MS = 600_000  # one notebook's Run All on a loaded 2-core machine
REDRAW_TIMEOUT_MS = 60_000
# Fresh lab settings: no news/update toasts, every cell in the DOM (no virtual scrolling), no sidebar.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    # autoStartDefaultKernel: no "Select Kernel" dialog when the page attaches slowly on a loaded machine.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                   "autoStartDefaultKernel": True},
}
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on screen (selectors below stay inside it)
STDERR = f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
CONTROLS = ".widget-slider, .widget-dropdown, .widget-checkbox"
IDLE = f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']"
PLOTS = f"{PANEL} .jp-OutputArea .js-plotly-plot"  # static figures carry the class on the output itself

# Marks every explorer: the innermost widget box that holds both a control and a live plotly figure.
MARK_EXPLORERS = """([panel, controls]) => {
  const boxes = [...document.querySelectorAll(panel + ' .widget-box')].filter(
      b => b.querySelector('.js-plotly-plot') && b.querySelector(controls));
  const inner = boxes.filter(b => !boxes.some(o => o !== b && b.contains(o)));
  inner.forEach((b, i) => b.setAttribute('data-explorer', String(i)));
  return inner.length;
}"""
# Every outermost widget box that holds a control must also show a drawn plotly figure (a figure whose front end
# failed to load leaves its box with controls only, which MARK_EXPLORERS would silently not count).
BOXES_DRAWN = """([panel, controls]) => {
  const boxes = [...document.querySelectorAll(panel + ' .widget-box')].filter(b => b.querySelector(controls));
  const outer = boxes.filter(b => !boxes.some(o => o !== b && o.contains(b)));
  return outer.every(b => { const gd = b.querySelector('.js-plotly-plot'); return gd && gd.layout; });
}"""
# What a person sees of a figure: its title and every trace's data and labels.
FIGURE_STATE = """(box) => {
  const gd = box.querySelector('.js-plotly-plot');
  if (!gd || !gd.data || !gd.layout) return null;
  const t = gd.layout.title;
  const pick = d => [d.type, d.name, d.x, d.y, d.z, d.text, d.marker && d.marker.color, d.marker && d.marker.size];
  const notes = (gd.layout.annotations || []).map(a => a.text);
  return JSON.stringify({title: (t && t.text) || t || '', data: gd.data.map(pick),
                         shapes: (gd.layout.shapes || []).length, notes: notes});
}"""
SETTLED = """([box, before, idle]) => {
  const s = window.__figureState(box);
  if (s === null || s === before || !document.querySelector(idle)) { box.__since = null; return false; }
  if (box.__last !== s || box.__since == null) { box.__last = s; box.__since = performance.now(); return false; }
  return performance.now() - box.__since > 300;
}"""
RUN_STATE = """([panel, idle]) => {
  const prompts = [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  const queued = prompts.some(p => p.includes('*'));
  return {done: prompts.length > 0 && !queued && prompts.some(p => /\\[\\d+\\]/.test(p)), queued,
          idle: document.querySelector(idle) !== null};
}"""
# Cells still marked [*] while the kernel has been idle this long: the queue was dropped, not slow.
STALL_S = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _delete(url: str):
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).close()


@pytest.fixture(scope="module")
def chromium_context(tmp_path_factory):
    """One headless Chromium per worker (checked first: skips before any server starts)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (or set LONGLAB_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (extra `browser`)")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport=VIEWPORT)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def lab(chromium_context, tmp_path_factory):
    """(base_url, token, log path) of a throwaway JupyterLab serving a copy of notebooks/ (data/ linked beside it)."""
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "data").symlink_to(ROOT / "data", target_is_directory=True)  # notebooks read ../data/...
    settings = tmp / "lab-settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "LONGLAB_HEADLESS"}  # the widgets must be live here
    env.update(JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           "--LabApp.news_url=None", f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root; jupyter refuses otherwise
        cmd.append("--allow-root")
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{(tmp / 'lab.log').read_text()}")
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in 60 s:\n{(tmp / 'lab.log').read_text()}")
                time.sleep(0.3)  # poll interval of the readiness check above
        yield base, token, tmp / "lab.log"
    finally:
        try:  # shut kernels down through the API so none outlive the server
            for kernel in _get(f"{base}/api/kernels?token={token}") or []:
                _delete(f"{base}/api/kernels/{kernel['id']}?token={token}")
        except OSError:
            pass
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: the server and anything it started
            proc.wait(timeout=5)
        log.close()


@pytest.fixture
def page(chromium_context):
    page = chromium_context.new_page()
    page.set_default_timeout(30_000)
    page.console_log, page.uncaught = [], []  # the browser console (kept with the screenshots), uncaught errors
    page.on("console", lambda m: page.console_log.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.uncaught.append(str(e)))
    try:
        yield page
    finally:
        page.close()


def _artifacts(tmp_path, notebook):
    """Folders that receive this notebook's screenshots."""
    folders = [tmp_path]
    if os.environ.get("LONGLAB_BROWSER_ARTIFACTS"):
        folders.append(Path(os.environ["LONGLAB_BROWSER_ARTIFACTS"]) / Path(notebook).stem)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_live_and_every_control_redraws(notebook, page, lab, tmp_path):
    base, token, _ = lab
    session = _start_session(base, token, f"notebooks/{notebook}")
    folders = _artifacts(tmp_path, notebook)
    console = []  # the page's JavaScript errors (a widget that fails to apply an update logs here)
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: console.append(str(err)))
    try:
        _drive(notebook, base, token, page, folders)
    except BaseException:
        for folder in folders:  # look here first when this fails
            page.screenshot(path=str(folder / "failure.png"))
            (folder / "failure.html").write_text(page.content())
            (folder / "console-errors.txt").write_text("\n".join(console))
            shutil.copy(lab[2], folder / "lab.log")  # the server's and the kernels' output
        raise
    finally:
        try:
            _delete(f"{base}/api/sessions/{session['id']}?token={token}")  # frees the kernel's memory
        except OSError:
            pass


def _start_session(base, token, path):
    """Create the notebook's session (and kernel) through the REST API before the page opens: the page then
    attaches to it instead of racing to start one (seen here: a second kernel, the first one killed)."""
    body = json.dumps({"path": path, "name": Path(path).name, "type": "notebook",
                       "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(f"{base}/api/sessions?token={token}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read())


def _settle_dialogs(page, rounds: int = 3):
    """Answer dialogs JupyterLab may still raise on a slow, loaded machine (e.g. kernel selection while the
    kernel is starting) with their default button; a dialog reporting a dead or failing kernel fails the test."""
    dialog = page.locator(".jp-Dialog")
    for _ in range(rounds):
        if not dialog.count():
            return
        text = dialog.first.inner_text()
        if any(word in text for word in ("died", "Restarting", "Error", "error")):
            raise AssertionError(f"JupyterLab reported a problem:\n{text}")
        accept = dialog.first.locator(".jp-Dialog-button.jp-mod-accept")
        if accept.count():
            accept.first.click(timeout=5_000)
        else:
            page.keyboard.press("Escape")
        dialog.first.wait_for(state="detached", timeout=5_000)


def _run_all_cells(page, attempts: int = 6):
    """Run > Run All Cells; retried because a click landing before the kernel connection settles is lost."""
    started = ("() => [...document.querySelectorAll('.jp-InputPrompt')]"
               ".some(p => /\\[(\\d+|\\*)\\]/.test(p.textContent))")
    for _ in range(attempts):
        _settle_dialogs(page)
        try:
            page.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=8_000)
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=8_000)
            page.wait_for_function(started, timeout=8_000)
            return
        except Exception:  # playwright TimeoutError: try again
            page.keyboard.press("Escape")
    raise AssertionError(f"Run All Cells did not start any cell after {attempts} tries")


def _wait_all_ran(page) -> bool:
    """True once every queued cell has run. False when cells still show [*] while the kernel has sat idle for
    STALL_S: under heavy load the page can reconnect to the kernel (the server logs a websocket error) and drop
    its queue, which would otherwise leave the test waiting out RUN_TIMEOUT_MS; the caller runs all again."""
    deadline, stalled_since = time.monotonic() + RUN_TIMEOUT_MS / 1000, None
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE, [PANEL, IDLE])
        if state["done"]:
            return True
        if state["queued"] and state["idle"]:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > STALL_S:
                return False
        else:
            stalled_since = None
        page.wait_for_timeout(1_000)  # poll; a cell may legitimately run for minutes on a loaded machine
    raise AssertionError(f"Run All did not finish within {RUN_TIMEOUT_MS / 1000:.0f} s")


def _red_outputs(page) -> list[str]:
    """Texts of every stderr/error output (tracebacks and warnings both render as stderr)."""
    return page.locator(STDERR).all_inner_texts()


def _drive(notebook, base, token, page, folders):
    # a workspace of its own: only this notebook opens (not the ones earlier tests left in the default one)
    page.goto(f"{base}/lab/workspaces/{Path(notebook).stem}/tree/notebooks/{notebook}?token={token}")
    page.wait_for_selector(f"{PANEL} .jp-Cell", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    if page.locator(".jp-SideBar .lm-TabBar-tab.lm-mod-current").count():  # collapse the file browser
        page.keyboard.press("Control+b")
    for _attempt in range(3):
        _run_all_cells(page)
        _wait_all_ran(page)  # returns early when the page dropped its queue: those cells count as unrun below
        page.wait_for_selector(IDLE, timeout=60_000)
        # a cell whose source is hidden shows an empty prompt: it is judged by its outputs (checked just below)
        prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-Cell-inputWrapper .jp-InputPrompt").all_text_contents()
        unrun = [i for i, text in enumerate(prompts) if text.strip() and not re.search(r"\[\d+\]", text)]
        red = _red_outputs(page)
        if red or not unrun:
            break
        # seen on a loaded machine: the page reconnected to the kernel and dropped the queued cells; run again
    assert not red, f"{notebook}: error or warning output in JupyterLab:\n" + "\n---\n".join(red)
    assert not unrun, f"{notebook}: code cells {unrun} did not run"
    page.wait_for_function("(sel) => [...document.querySelectorAll(sel)].every(gd => gd.layout)", arg=PLOTS,
                           timeout=60_000)
    _screenshots(page, folders, "static")

    try:
        page.wait_for_function(BOXES_DRAWN, arg=[PANEL, CONTROLS], timeout=REDRAW_TIMEOUT_MS)
    except Exception as err:  # playwright TimeoutError
        raise AssertionError(f"{notebook}: a widget box with controls shows no drawn figure") from err
    page.evaluate(f"() => {{ window.__figureState = {FIGURE_STATE}; }}")
    explorers = page.evaluate(MARK_EXPLORERS, [PANEL, CONTROLS])
    moves = []
    for i in range(explorers):
        moves += _exercise(page, page.locator(f"[data-explorer='{i}']"), notebook, i)
    red = _red_outputs(page)
    assert not red, f"{notebook}: error or warning output while the widgets redrew:\n" + "\n---\n".join(red)
    _screenshots(page, folders, "after")
    width = page.evaluate(f"() => document.querySelector('{PANEL} .jp-OutputArea-output').clientWidth")
    (folders[-1] / "console.txt").write_text("\n".join(page.console_log + page.uncaught))
    (folders[-1] / "moves.json").write_text(json.dumps({"output_width_px": width, "moves": moves}, indent=1))
    assert not page.uncaught, f"{notebook}: uncaught errors in the page:\n" + "\n".join(page.uncaught)


def _exercise(page, box, notebook, index) -> list[str]:
    """Move every visible control of one explorer at least once (sliders and checkboxes first, then each other
    option of each dropdown); controls that a dropdown value reveals are moved in the next round."""
    done, moves = set(), []
    for _ in range(4):
        controls = box.locator(CONTROLS)
        todo = []
        for j in range(controls.count()):
            control = controls.nth(j)
            if not control.is_visible():
                continue
            key = _describe(control)
            if key not in done:
                todo.append((key, control))
        if not todo:
            break
        todo.sort(key=lambda item: item[0].startswith("dropdown"))
        state = _wait_settled(page, box)
        for key, control in todo:
            for action in _actions(control):
                start = time.monotonic()
                action()  # the state it starts from is the settled one the previous move left
                state = _wait_settled(page, box, state, f"{notebook} explorer {index}: {key}")
                took = time.monotonic() - start  # includes the 300 ms the figure must hold still
                moves.append(f"explorer {index}: {key}: {took:.2f} s: {json.loads(state)['title'][:80]}")
            done.add(key)
    assert done, f"{notebook}: explorer {index} has no visible control"
    return moves


def _describe(control) -> str:
    kind = next(k for k in ("slider", "dropdown", "checkbox") if control.get_attribute("class").count(f"widget-{k}"))
    labels = [t.strip(" \u200b\n") for t in control.locator("label").all_inner_texts()]
    return f"{kind} {next((t for t in labels if t), '?')}"


def _actions(control):
    """Callables that each move `control` once: one step for a slider (right, or left at its maximum), a click
    for a checkbox, selecting each other option in turn for a dropdown."""
    classes = control.get_attribute("class")
    if "widget-dropdown" in classes:
        select = control.locator("select")
        current = select.input_value()
        values = [v for v in select.locator("option").evaluate_all("os => os.map(o => o.value)") if v != current]
        return [lambda v=v: select.select_option(v) for v in values]
    if "widget-checkbox" in classes:
        return [lambda: control.locator("input[type=checkbox]").click()]
    handle = control.locator(".noUi-handle")

    def step():
        now, top = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemax"))
        handle.scroll_into_view_if_needed()
        handle.focus()
        handle.press("ArrowLeft" if now >= top else "ArrowRight")
    return [step]


def _wait_settled(page, box, before: str | None = None, what: str = "") -> str:
    """The figure's state once the kernel is idle and the figure has not changed for 300 ms (a redraw arrives as
    several messages); with `before`, the state must also differ from it, else fail with `what`."""
    try:
        page.wait_for_function(SETTLED, arg=[box.element_handle(), before, IDLE], timeout=REDRAW_TIMEOUT_MS)
    except Exception as err:  # playwright TimeoutError
        if before is None:
            raise
        raise AssertionError(f"{what}: moving it did not change the figure") from err
    return box.evaluate("b => window.__figureState(b)")


def _screenshots(page, folders, tag):
    """The window, plus each plotly figure (static or live) scrolled into view."""
    for folder in folders:
        page.screenshot(path=str(folder / f"{tag}-window.png"))
    plots = page.locator(PLOTS)
    for k in range(plots.count()):
        plot = plots.nth(k)
        plot.scroll_into_view_if_needed()
        for folder in folders:
            plot.screenshot(path=str(folder / f"{tag}-figure-{k:02d}.png"))
