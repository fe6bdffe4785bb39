"""gitml ui in a real browser: Playwright driving Debian's chromium against the real
server (uvicorn on loopback) over a real repository.

Playwright's own browser download needs the internet; CI installs Debian's chromium
with apt-get when it is missing (CI runs as root), and says so clearly when it cannot.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

pytest.importorskip("starlette")
playwright_api = pytest.importorskip("playwright.sync_api")

from tests.uirepo import HOSTILE, SPIKE, build, build_registry  # noqa: E402

BROWSERS = ("chromium", "chromium-browser")


def _chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # One install at a time (two xdist workers, or two runs on the machine): the second waits, then
    # finds the first's chromium; apt-get itself waits for dpkg's lock held by anything else.
    with open(os.path.join(tempfile.gettempdir(), "gitml-tests-chromium.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shutil.which("chromium"):
            for command in (
                ["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"],
                ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "chromium"],
            ):
                result = subprocess.run(command, capture_output=True, text=True, env=env)
                if result.returncode != 0:
                    pytest.fail(f"installing chromium failed: {' '.join(command)}: {result.stderr.strip()[-500:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get installed chromium but no chromium is on PATH")
    return found


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real server (uvicorn in a thread) over a repository built once for the module."""
    import uvicorn

    import gitml.ops
    from gitml.ui import allowed_hosts
    from gitml.ui.app import make_app

    path = tmp_path_factory.mktemp("uirepo")
    env = {
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
        (path / "train.py").write_text("print('training')\n")
        subprocess.run(["git", "-C", str(path), "add", "."], check=True)
        subprocess.run(["git", "-C", str(path), "commit", "-qm", "initial"], check=True)
        client = gitml.ops.Operations(path)
        ids = build(client)
        for i in range(60):  # enough runs for two pages of 50
            client.set_terminated(client.create_run(ids["experiment"], run_name=f"bulk-{i:02d}").info.run_id)
        keys = tmp_path_factory.mktemp("keys")
        build_registry(client, path, keys)  # a registered model, ssh-signed stage tags
        listening = socket.socket()  # bound here and handed to uvicorn: no other process can take the port between
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        app = make_app(client, allowed_hosts=allowed_hosts("127.0.0.1"))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", ids
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()
        client.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.dialogs = []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    errors = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    assert not errors, errors  # no script error on any page
    assert not tab.dialogs, tab.dialogs  # nothing from a run ran
    context.close()


def _rows(page):
    return page.locator("#runs-table tbody tr")


def test_runs_table_pages_sorts_and_filters(page, server):
    url, ids = server
    page.goto(f"{url}/runs?experiment={ids['experiment']}")
    page.wait_for_selector("#runs-table tbody tr")
    assert _rows(page).count() == 50
    assert page.inner_text("#range") == "1–50 of 64"
    page.click("#next")
    page.wait_for_function("() => document.querySelector('#range').textContent.startsWith('51')")
    assert _rows(page).count() == 14
    # sort by a metric column (acc), ascending after a second click
    page.click("#runs-table th[data-sort='metrics.acc']")
    page.wait_for_function("() => document.querySelector('#range').textContent.startsWith('1–50')")
    page.click("#runs-table th[data-sort='metrics.acc']")
    page.wait_for_selector("#runs-table th[data-sort='metrics.acc']:has-text('▲')")
    first = _rows(page).first
    assert first.locator("td.name").inner_text() == HOSTILE  # acc 0.5, the smallest; a hostile name as text
    # an OR filter
    page.fill("#filter", "params.model = 'mlp' OR params.lr = '0.001'")
    page.press("#filter", "Enter")
    page.wait_for_function("() => document.querySelector('#range').textContent === '1–2 of 2'")
    names = sorted(n.strip("↳ ") for n in page.locator("#runs-table td.name").all_inner_texts())
    assert names == ["child-b", "other"]
    # a malformed filter shows its error, with a caret at its position
    page.fill("#filter", "metrics.acc > 0.5 AND AND")
    page.press("#filter", "Enter")
    page.wait_for_selector("#filter-error:not([hidden])")
    text = page.inner_text("#filter-error")
    assert "position 22" in text and text.splitlines()[-1] == " " * 22 + "^"


def test_column_choice_is_remembered(page, server):
    url, ids = server
    page.goto(f"{url}/runs?experiment={ids['experiment']}")
    page.wait_for_selector("#runs-table tbody tr")
    page.click("#columns-button")
    page.check("#column-chooser input[data-column='tags.note']")
    page.wait_for_selector("#runs-table th[data-sort='tags.note']")
    page.goto(f"{url}/runs?experiment={ids['experiment']}&filter=tags.note%20IS%20NOT%20NULL")  # a new visit
    page.wait_for_selector("#runs-table th[data-sort='tags.note']")
    assert page.input_value("#filter") == "tags.note IS NOT NULL"
    assert page.locator("#runs-table td", has_text="<i>hi</i>").count() == 1


def test_chart_draws_and_keeps_the_spike(page, server):
    url, ids = server
    page.goto(f"{url}/chart?runs={ids['parent']}&key=loss")
    page.wait_for_function("() => window.gitmlCharts.length > 0 && !!window.gitmlCharts[0].plot")
    drawn = page.evaluate("""() => {
        const u = window.gitmlCharts[0].plot;
        const c = u.ctx.canvas, ctx = u.ctx;
        const img = ctx.getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < img.length; i += 4) if (img[i] > 0) painted++;
        // the line's colour in the top tenth of the plotting area: the spike reaches it
        const top = ctx.getImageData(u.bbox.left, u.bbox.top, u.bbox.width, Math.ceil(u.bbox.height / 10)).data;
        let high = 0;
        for (let i = 0; i < top.length; i += 4) if (top[i + 3] > 0 && top[i + 2] > top[i]) high++;
        return {painted, high, max: Math.max(...u.data[1].filter(v => v !== null)), ymax: u.scales.y.max};
    }""")
    assert drawn["painted"] > 1000 and drawn["max"] == SPIKE and drawn["ymax"] >= SPIKE and drawn["high"] > 0
    timings = page.evaluate("window.gitmlTimings.filter(t => t.kind === 'chart')")
    assert timings and timings[0]["draw"] < 1000


def test_compare_view(page, server):
    url, ids = server
    page.goto(f"{url}/runs?experiment={ids['experiment']}&filter=params.model%20%3D%20%27cnn%27")
    page.wait_for_selector("#runs-table tbody tr")
    for run in (ids["child-a"], ids["child-b"]):
        page.check(f"#runs-table tr[data-run='{run}'] input[type=checkbox]")
    page.click("#compare-button")
    page.wait_for_selector("#parallel svg polyline")
    assert page.locator("#compare-params tr.differs th").all_inner_texts() == ["lr"]
    assert page.locator("#parallel polyline").count() == 2
    assert page.locator("#scatter circle").count() == 2


def test_artifact_preview_and_hostile_run_page(page, server):
    url, ids = server
    page.goto(f"{url}/run/{ids['parent']}")
    assert page.inner_text("#run-name") == HOSTILE
    assert page.locator("#params-table td", has_text="<img src=x onerror=alert(1)>").count() == 1
    page.click("#artifacts a:has-text('t.csv')")
    page.wait_for_selector("#preview-table")
    assert page.locator("#preview-table th").all_inner_texts() == ["a", "b"]
    assert page.locator("#preview-table td").all_inner_texts() == ["1", "2", "3", "<x>"]
    page.goto(f"{url}/run/{ids['parent']}/artifact/page.html")
    assert "<script>alert(1)</script>" in page.inner_text("#preview pre")


def test_registry_pages(page, server):
    url, ids = server
    page.goto(f"{url}/")
    page.click("header a:has-text('models')")
    page.click("#models a:has-text('churn')")
    page.wait_for_selector("#stages")
    production = page.locator("#stages tr[data-stage='production']")
    assert production.locator("td").nth(1).inner_text() == "v1.0.0"
    assert production.locator(".signature").inner_text() == "trusted · bot@example.com"
    v1 = page.locator("#versions tr[data-version='v1.0.0']")
    assert v1.locator("td").last.inner_text() == HOSTILE  # the description, as text
    assert page.locator("#history tr.ignored td.mono").all_inner_texts() == ["churn#production#9"]
    v1.locator("a").click()
    page.wait_for_selector("#run-name")
    assert page.inner_text("#run-name") == HOSTILE
