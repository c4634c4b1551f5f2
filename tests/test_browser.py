"""Notebook 02's temperature explorer in a real browser: JupyterLab on loopback with a token,
headless Debian Chromium driven by playwright-python.

The notebook is copied into a temporary folder with a tiny setting (one tiny student, one T,
one epoch, no loss variants) so that "Run All" finishes in seconds; the kernel gets a teacher
cache of its own. The test moves the temperature slider with the keyboard and checks that the
kernel's answer arrives: the readout says the new T and the chart is redrawn.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_temperature_soft_targets.ipynb"
TINY_SETTING = {"student": "mlp-tiny", "temperature": 4.0, "alpha": 0.9, "epochs": 1, "n_seeds": 1, "loss_variants": False}
TOKEN = "distill-browser-test-token"
RUN_ALL_TIMEOUT_MS = 240_000  # the notebook itself; generous for a CPU shared with other jobs

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM} missing; "
                                                     "apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright-python is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(port: int, path: str, method: str = "GET") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def tiny_notebook_copy(folder: Path, run_dir: Path) -> Path:
    """The notebook with a cell after its parameters cell that sets the tiny setting."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    where = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    overrides = {**TINY_SETTING, "run_dir": str(run_dir)}
    cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(where + 1, cell)
    path = folder / "temperature.ipynb"
    nbformat.write(notebook, path)
    return path


def teacher_cache(folder: Path) -> Path:
    """A throwaway teacher where get_teacher("quick") looks (used when no teacher is shipped in
    data/): random weights are enough to drive the explorer, and cost no training."""
    from distill_lib.core.checkpoints import save_checkpoint
    from distill_lib.core.models import build_model
    from distill_lib.teachers import recipe, recipe_key

    rec = recipe("quick")  # get_teacher takes a cached teacher only when it records this recipe and seed
    model = build_model(rec["model"], seed=0)
    save_checkpoint(model, folder / f"teacher-quick-{recipe_key(rec, 0)}.pt", dataset=rec["dataset"], recipe=rec,
                    seed=0, profile="quick", recipe_key=recipe_key(rec, 0), test_accuracy=0.0,
                    note="random weights for the browser test")
    return folder


def jupyter_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp / "rt"), IPYTHONDIR=str(tmp / "ipy"),
               DISTILL_LIB_CACHE=str(teacher_cache(tmp / "cache")))
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)  # no "official Jupyter news" toast over the output
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return env


@pytest.fixture
def jupyter_lab(tmp_path):
    """(port, notebook name) of a JupyterLab serving the tiny notebook copy; stopped afterwards."""
    folder = tmp_path / "nb"
    folder.mkdir()
    notebook = tiny_notebook_copy(folder, tmp_path / "run")
    port = free_port()
    jupyter = Path(sys.executable).with_name("jupyter")
    command = [str(jupyter) if jupyter.exists() else shutil.which("jupyter"), "lab", "--no-browser", "--allow-root",
               "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
               f"--ServerApp.root_dir={folder}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
               f"--LabApp.user_settings_dir={tmp_path / 'settings'}"]
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(command, env=jupyter_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(proc, port, tmp_path / "jupyter.log")
        yield port, notebook.name
        try:
            api(port, "/api/shutdown", method="POST")  # also stops the kernel
            proc.wait(20)
        except Exception:
            pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def wait_until_ready(proc, port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if api(port, "/api/status") == 200:
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"jupyter lab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def run_all_cells(page, expect) -> None:
    idle = page.locator(".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle")
    expect(idle).to_be_visible()  # a kernel exists: running before this silently does nothing
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    # the last cell prints "wrote .../metrics.json" when the whole notebook has run
    expect(page.locator(".jp-OutputArea-output", has_text="metrics.json")).to_be_visible(timeout=RUN_ALL_TIMEOUT_MS)
    expect(idle).to_be_visible()


def test_moving_the_temperature_slider_updates_readout_and_chart(jupyter_lab, tmp_path):
    port, name = jupyter_lab
    expect = sync_api.expect
    expect.set_options(timeout=60_000)  # expect() waits 5 s by default: too short for a kernel start
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}?token={TOKEN}")
            run_all_cells(page, expect)
            readout = page.locator(".jp-OutputArea .temperature-readout")
            picture = page.locator(".jp-OutputArea img.temperature-explorer-picture")
            expect(readout).to_contain_text("T=1.000")
            picture.scroll_into_view_if_needed()
            before = (picture.get_attribute("src"), picture.screenshot())

            handle = page.locator(".jp-OutputArea .temperature-explorer-temperature .noUi-handle")
            handle.focus()
            for _ in range(4):  # each press is one step of the exponent: 10 ** 0.2 = 1.585
                page.keyboard.press("ArrowRight")
            expect(readout).to_contain_text("T=1.585")  # the kernel's answer, not the slider's own label
            expect(page.locator(".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle")).to_be_visible()
            page.locator(".jp-OutputArea .temperature-explorer-picture").scroll_into_view_if_needed()
            after = (picture.get_attribute("src"), picture.screenshot())
            assert after[0] != before[0], "the chart's image was not replaced"
            assert after[1] != before[1], "the chart looks the same after moving the slider"
            assert page.locator(".jp-OutputArea .temperature-explorer-temperature .widget-readout").inner_text() == "1.58"
            page.screenshot(path=str(tmp_path / "explorer.png"))  # kept by pytest, to look at by eye
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))  # for the person reading the failure
            raise
        finally:
            browser.close()
