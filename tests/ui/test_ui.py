"""gitml ui: every route through Starlette's test client over a real repository;
M4 downsampling, EMA, nested runs; security (hostile names, paths, artifact types,
Host header); vendored assets; the real server started by the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from gitml.ui import MissingExtraError, allowed_hosts, check_installed, series, tables  # noqa: E402  # noqa: E402
from gitml.ui.app import host_name, make_app  # noqa: E402
from tests.conftest import ROOT, run_python  # noqa: E402
from tests.uirepo import MLMODEL, POINTS, SPIKE, SPIKE_STEP, build  # noqa: E402

BASE = "http://127.0.0.1"


@pytest.fixture
def ui(client):
    ids = build(client)
    web = TestClient(make_app(client, allowed_hosts=allowed_hosts("127.0.0.1")), base_url=BASE)
    return web, ids


# -- M4, EMA, grouping --------------------------------------------------------------
def test_m4_keeps_a_one_point_spike_among_a_million():
    n = 1_000_000
    x = np.arange(n, dtype=np.float64)
    y = np.sin(x / 5000.0)
    y[654_321] = 50.0  # one point
    y[123_457] = -40.0
    xs, ys = series.m4(x, y, None, None, 800)
    assert len(xs) <= 4 * 800 + 2
    assert ys.max() == 50.0 and xs[ys.argmax()] == 654_321
    assert ys.min() == -40.0
    assert np.all(np.diff(xs) > 0)
    stride = y[:: n // 3200]  # what stride sampling (MLflow's UI) keeps: the spike is gone
    assert stride.max() < 2


def test_m4_range_keeps_every_point_inside_and_one_neighbour_outside():
    x = np.arange(100_000, dtype=np.float64)
    y = x * 2
    xs, _ = series.m4(x, y, 1000.5, 1500.2, 800)  # 500 points in range: fewer than 4 per column
    assert xs[0] == 1000 and xs[-1] == 1501
    assert list(xs[1:-1]) == list(np.arange(1001, 1501))
    xs, _ = series.m4(x, y, 10.0, 90_000.0, 100)
    assert xs[0] == 9 and xs[-1] == 90_001 and len(xs) <= 402


def test_m4_keeps_nan_and_infinities():
    x = np.arange(100_000, dtype=np.float64)
    y = np.ones(100_000)
    y[500], y[70_000] = np.nan, np.inf
    _, ys = series.m4(x, y, None, None, 50)
    assert np.isnan(ys).sum() == 1 and np.isinf(ys).sum() == 1


def test_ema_is_the_debiased_recurrence():
    rng = np.random.default_rng(1)
    y = rng.random(20_000)
    for a in (0.01, 0.6, 0.99):
        last = weight = 0.0
        expected = []
        for v in y:
            last, weight = a * last + (1 - a) * v, a * weight + (1 - a)
            expected.append(last / weight)
        assert np.allclose(series.ema(y, a), expected, rtol=1e-9, atol=1e-12)
    assert series.ema(y, 0) is y


def test_nested_order_puts_children_under_parents_and_survives_cycles():
    runs = [("c1", "p"), ("x", None), ("p", None), ("g", "c1"), ("orphan", "gone"), ("a", "b"), ("b", "a")]
    ids = [r for r, _ in runs]
    grouped = [(ids[i], depth) for i, depth in tables.nested_order(ids, [p for _, p in runs])]
    assert grouped == [("x", 0), ("p", 0), ("c1", 1), ("g", 2), ("orphan", 0), ("a", 0), ("b", 1)]


def test_columns_and_sort_clauses_are_checked():
    assert tables.parse_columns("params.lr,metrics.val.loss") == [("params", "lr"), ("metrics", "val.loss")]
    with pytest.raises(Exception, match="column 'x.y'"):
        tables.parse_columns("x.y")
    assert tables.order_clause("metrics.my key", True) == "metrics.`my key` DESC"
    with pytest.raises(Exception, match="cannot sort"):
        tables.order_clause("metrics.a`b", False)


# -- routes -----------------------------------------------------------------------
def test_every_page_and_api_route_answers(ui):
    web, ids = ui
    parent = ids["parent"]
    for url in [
        "/",
        "/runs",
        f"/runs?experiment={ids['experiment']}",
        f"/run/{parent}",
        f"/run/{parent}/artifact/cfg.json",
        f"/compare?runs={parent},{ids['other']}",
        f"/chart?runs={parent}",
        "/api/experiments",
        "/api/runs",
        f"/api/run/{parent}",
        f"/api/series?runs={parent}&key=loss",
        f"/api/compare?runs={parent},{ids['other']}",
        f"/api/groups?key=loss&group=lr&experiment={ids['experiment']}",
        "/static/ui.js",
    ]:
        response = web.get(url)
        assert response.status_code == 200, (url, response.text[:300])
    page = web.get(f"/run/{parent}").text
    assert "Changes in the source commit" in page  # the code diff of its source commit
    assert 'id="lineage"' in page and "initial" in page  # gitml log: down to the source commit
    assert "MLmodel" in page and "big.txt" in page  # the artifact tree
    assert f"/run/{ids['child-a']}" in page  # its nested runs
    facts = web.get(f"/api/run/{parent}").json()
    assert facts["status"] == "FINISHED" and facts["metrics"]["loss"] == pytest.approx(1 / POINTS)
    assert web.get("/run/" + "0" * 32).status_code == 404
    plural = web.get(f"/runs/{parent}", follow_redirects=False)  # MLflow's links say runs/<id>
    assert plural.status_code == 308 and plural.headers["location"] == f"/run/{parent}"
    assert web.get(f"/runs/{parent}").text == page
    assert web.get("/api/series?runs=nope&key=loss").status_code == 404


def test_runs_api_pages_sorts_and_filters_with_or_and_parentheses(ui):
    web, ids = ui
    exp = ids["experiment"]
    body = web.get(f"/api/runs?experiment={exp}&columns=metrics.acc,params.lr&keys=1").json()
    assert body["total"] == 4 and body["columns"] == ["metrics.acc", "params.lr"]
    assert body["keys"]["params"] == ["lr", "model"] and "note" in body["keys"]["tags"]
    assert not any(k.startswith("mlflow.") for k in body["keys"]["tags"])
    assert all(r["source_commit"] and r["branch"] == "main" for r in body["rows"])
    body = web.get(f"/api/runs?experiment={exp}&columns=metrics.acc&sort=metrics.acc&desc=0").json()
    assert [r["values"][0] for r in body["rows"]] == [0.5, 0.7, 0.9, 0.8]  # children stay under their parent
    assert [r["depth"] for r in body["rows"]] == [0, 1, 1, 0]
    flt = "(params.lr = '0.01' OR params.lr = '0.001') AND metrics.acc > 0.75"
    body = web.get("/api/runs", params={"filter": flt, "columns": "params.lr"}).json()
    assert [r["run_name"] for r in body["rows"]] == ["child-b"] and body["rows"][0]["depth"] == 0
    body = web.get("/api/runs", params={"filter": "params.model = 'mlp' OR params.lr = '0.001'"}).json()
    assert {r["run_name"] for r in body["rows"]} == {"other", "child-b"}
    page1 = web.get(f"/api/runs?experiment={exp}&limit=3").json()
    page2 = web.get(f"/api/runs?experiment={exp}&limit=3&offset=3").json()
    assert len(page1["rows"]) == 3 and len(page2["rows"]) == 1 and page2["total"] == 4
    assert web.get("/api/runs?limit=0").status_code == 400
    assert web.get("/api/runs?columns=bogus").status_code == 400


def test_a_first_visit_gets_default_columns_and_keys_in_one_request(ui):
    web, ids = ui
    body = web.get(f"/api/runs?experiment={ids['experiment']}&defaults=1&keys=1").json()
    assert body["columns"] == ["metrics.acc", "metrics.loss", "params.lr", "params.model"]  # metrics first, then params
    assert body["keys"]["metrics"] == ["acc", "loss"] and len(body["rows"][0]["values"]) == 4


def test_a_search_is_kept_until_a_run_changes(ui, client, repo, monkeypatch):
    import gitml.ops

    web, ids = ui  # the app searches through a Client of the same repository: count the searches of any
    searches = []
    real = type(client).search_columns
    monkeypatch.setattr(type(client), "search_columns", lambda self, *a, **k: searches.append(a) or real(self, *a, **k))
    exp = ids["experiment"]
    for url in (
        f"/api/runs?experiment={exp}&limit=2",
        f"/api/runs?experiment={exp}&limit=2&offset=2",
        f"/api/runs?experiment={exp}&columns=params.lr",
        f"/api/runs?experiment={exp}&sort=metrics.acc",
        f"/api/runs?experiment={exp}&sort=metrics.acc&offset=1",
        f"/api/runs?experiment={exp}",
    ):
        assert web.get(url).status_code == 200
    assert len(searches) == 2  # one per filter and order, not one per page or column choice
    with gitml.ops.Operations(repo) as writer:
        writer.set_tag(ids["other"], "note", "changed")
    body = web.get(f"/api/runs?experiment={exp}&columns=tags.note&limit=10").json()
    assert len(searches) == 3 and "changed" in [r["values"][0] for r in body["rows"]]


def test_search_columns_gives_search_rows_by_column(ui, client):
    _, ids = ui
    for flt, order in (
        ("", None),
        ("params.lr = '0.1' OR metrics.acc > 0.75", ["metrics.acc DESC"]),
        ("params.lr = 'x'", None),
    ):
        rows = client.search_rows([ids["experiment"]], flt, order_by=order)
        keys, values = client.search_columns([ids["experiment"]], flt, order_by=order)
        assert values["attributes.run_id"] == [r["run_id"] for r in rows]
        for section in ("params", "metrics", "tags"):
            assert keys[section] == sorted({k for r in rows for k in r[section]})
            for key in keys[section]:
                assert values[f"{section}.{key}"] == [r[section].get(key) for r in rows]


def test_a_malformed_filter_is_a_400_naming_its_position(ui):
    web, _ = ui
    response = web.get("/api/runs", params={"filter": "metrics.acc > 0.5 AND AND"})
    assert response.status_code == 400
    body = response.json()
    assert body["position"] == 22 and body["text"] == "metrics.acc > 0.5 AND AND"
    assert "position 22" in body["error"]


def test_series_keeps_the_spike_and_a_zoom_asks_for_its_range(ui):
    web, ids = ui
    body = web.get(f"/api/series?runs={ids['parent']}&key=loss&width=300").json()
    (s,) = body["series"]
    assert s["points"] == POINTS and len(s["x"]) <= 4 * 300 + 2
    assert max(s["y"]) == SPIKE and s["x"][s["y"].index(SPIKE)] == SPIKE_STEP
    zoom = web.get(f"/api/series?runs={ids['parent']}&key=loss&width=300&lo=100&hi=400").json()["series"][0]
    assert zoom["x"][0] == 99 and zoom["x"][-1] == 401 and len(zoom["x"]) == 303  # every point of the range
    smooth = web.get(f"/api/series?runs={ids['parent']}&key=loss&width=300&smooth=0.9").json()["series"][0]
    assert len(smooth["smooth"]) == len(smooth["y"]) and max(smooth["y"]) == SPIKE and max(smooth["smooth"]) < SPIKE
    rel = web.get(f"/api/series?runs={ids['parent']}&key=loss&x=relative&width=10").json()["series"][0]
    assert rel["x"][0] == 0 and rel["x"][-1] == pytest.approx((POINTS - 1) / 1000)
    two = web.get(f"/api/series?runs={ids['child-a']},{ids['child-b']}&key=loss").json()
    assert [s["run_name"] for s in two["series"]] == ["child-a", "child-b"]
    for bad in ("x=epoch", "width=0", "smooth=1", "lo=nan", "lo=abc"):
        assert web.get(f"/api/series?runs={ids['parent']}&key=loss&{bad}").status_code == 400, bad


def test_groups_give_a_mean_line_and_a_min_max_band(ui):
    web, ids = ui
    body = web.get(f"/api/groups?key=loss&group=model&experiment={ids['experiment']}&width=10&hi=49").json()
    groups = {g["value"]: g for g in body["groups"]}
    assert set(groups) == {"cnn", "<img src=x onerror=alert(1)>"}
    cnn = groups["cnn"]
    assert cnn["runs"] == 2 and len(cnn["mean"]) == 10 == len(body["grid"])
    assert cnn["min"][0] <= cnn["mean"][0] <= cnn["max"][0]
    assert cnn["min"][0] == cnn["max"][0]  # the two children logged the same curve
    assert web.get("/api/groups?key=loss").status_code == 400  # no param named


def test_compare_marks_differences_and_deltas(ui):
    web, ids = ui
    page = web.get(f"/compare?runs={ids['child-a']},{ids['child-b']}").text
    assert re.search(r'<tr class="differs"><th>lr</th><td>0.01</td><td>0.001</td>', page)
    assert re.search(r'<tr class="same"><th>model</th><td>cnn</td><td>cnn</td>', page)
    assert "(+0.2)" in page  # acc 0.9 against 0.7
    data = web.get(f"/api/compare?runs={ids['child-a']},{ids['child-b']}").json()
    assert data["columns"] == ["params.lr", "params.model", "metrics.acc", "metrics.loss"]
    assert data["runs"][1]["values"][:3] == ["0.001", "cnn", 0.9]
    assert web.get("/compare?runs=" + ",".join([ids["other"]] * 51)).status_code == 400


# -- artifacts ---------------------------------------------------------------------
def test_previews_csv_json_mlmodel_and_large_text_in_part(ui):
    web, ids = ui
    run = ids["parent"]
    page = web.get(f"/run/{run}/artifact/data/t.csv").text
    assert "<th>a</th><th>b</th>" in page and "<td>&lt;x&gt;</td>" in page
    assert '"a": [\n    1,' in web.get(f"/run/{run}/artifact/cfg.json").text.replace("&#34;", '"')
    model = web.get(f"/run/{run}/artifact/model/MLmodel").text
    assert "python_function" in model and "<td>x1</td><td>double</td>" in model and "<td>x2</td><td>long</td>" in model
    big = web.get(f"/run/{run}/artifact/big.txt").text
    assert 'id="truncated"' in big and len(big) < 300_000  # 256 KiB of a 520,000-byte file
    assert f"/run/{run}/raw/big.txt?download=1" in big
    raw = web.get(f"/run/{run}/raw/big.txt?download=1")
    assert len(raw.content) == 520_000 and raw.headers["content-disposition"].startswith("attachment")


def test_json_nested_past_the_parser_is_previewed_as_text(ui, client):
    """A teammate's run: a few kilobytes of '[' exhaust Python's JSON parser (RecursionError)."""
    web, ids = ui
    run = ids["other"]
    deep = "[" * 50_000 + "]" * 50_000
    client.log_text(run, deep, "deep.json")
    signature = '  inputs: \'[{"type": "double", "name": "x1"}, {"type": "long", "name": "x2"}]\'\n'
    assert signature in MLMODEL
    client.log_text(run, MLMODEL.replace(signature, f"  inputs: '{deep}'\n"), "model/MLmodel")
    page = web.get(f"/run/{run}/artifact/deep.json")
    assert page.status_code == 200 and "[[[[" in page.text
    model = web.get(f"/run/{run}/artifact/model/MLmodel")
    assert model.status_code == 200 and "python_function" in model.text and "<td>y</td><td>double</td>" in model.text


def test_html_and_svg_artifacts_are_downloads_never_pages(ui):
    web, ids = ui
    for name in ("page.html", "pic.svg", "cfg.json"):
        response = web.get(f"/run/{ids['parent']}/raw/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
    preview = web.get(f"/run/{ids['parent']}/artifact/page.html").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in preview and "<html><script>" not in preview
    assert "script-src 'self'" in web.get(f"/run/{ids['parent']}/artifact/page.html").headers["content-security-policy"]


def test_artifact_paths_cannot_leave_the_run(ui, repo):
    web, ids = ui
    (repo / "secret.txt").write_text("TOPSECRET-42")
    run = ids["parent"]
    for path in (
        "../../secret.txt",
        "%2e%2e/%2e%2e/secret.txt",
        "..%2F..%2Fsecret.txt",
        "data/../../secret.txt",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        ".gitml/run/meta.yaml",
        "data",
        "nope.txt",
        "data%5C..%5Ccfg.json",
    ):
        for route in ("raw", "artifact"):
            response = web.get(f"/run/{run}/{route}/{path}")
            assert response.status_code in (400, 404), (route, path, response.status_code)
            assert "TOPSECRET-42" not in response.text and "root:" not in response.text


def test_hostile_names_params_and_tags_are_text(ui):
    web, ids = ui
    for url in (
        f"/run/{ids['parent']}",
        f"/compare?runs={ids['parent']},{ids['other']}",
        "/",
        f"/chart?runs={ids['parent']}",
        f"/run/{ids['child-a']}",
        f"/run/{ids['parent']}/artifact/cfg.json",
    ):
        page = web.get(url).text
        assert (
            "<script>alert" not in page and "<img src=x" not in page and "<b>1</b>" not in page and "<i>hi" not in page
        )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in web.get(f"/run/{ids['parent']}").text
    assert "exp &lt;b&gt;1&lt;/b&gt;" in web.get("/").text
    error = web.get("/run/%3Cscript%3Ealert(1)%3C%2Fscript%3E").text  # the name in an error page
    assert "<script>alert" not in error


# -- the server's edges --------------------------------------------------------------
def test_host_header_allow_list(ui):
    web, ids = ui
    assert web.get("/", headers={"host": "evil.example"}).status_code == 400
    assert web.get("/api/runs", headers={"host": "evil.example:5000"}).status_code == 400
    assert web.get("/", headers={"host": "127.0.0.1.evil.example"}).status_code == 400
    for host in ("localhost:5000", "127.0.0.1:8080", "[::1]:5000", "LOCALHOST"):
        assert web.get("/", headers={"host": host}).status_code == 200, host
    assert host_name("[::1]:5000") == "[::1]" and host_name("example.com:80") == "example.com"
    assert "box.lan" in allowed_hosts("0.0.0.0", ["box.lan"]) and "localhost" not in allowed_hosts("192.0.2.1")


def test_no_route_writes(ui):
    web, ids = ui
    for url in ("/", "/api/runs", f"/run/{ids['parent']}", f"/run/{ids['parent']}/raw/cfg.json", "/api/series"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert web.request(method, url).status_code == 405, (method, url)


def test_security_headers_on_pages(ui):
    web, _ = ui
    headers = web.get("/").headers
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in headers["content-security-policy"]


def test_a_running_run_is_seen_live(ui, repo):
    import gitml.ops

    web, ids = ui
    with gitml.ops.Operations(repo) as writer:
        run = writer.create_run(ids["experiment"], run_name="live").info.run_id
        writer.log_metric(run, "loss", 3.0, step=0)
        rows = web.get("/api/runs", params={"filter": "run_name = 'live'"}).json()["rows"]
        assert rows[0]["status"] == "RUNNING"
        assert web.get(f"/api/series?runs={run}&key=loss").json()["series"][0]["points"] == 1
        writer.log_metric(run, "loss", 2.0, step=1)
        assert web.get(f"/api/series?runs={run}&key=loss").json()["series"][0]["points"] == 2
        writer.set_terminated(run)
        assert web.get(f"/api/run/{run}").json()["status"] == "FINISHED"


def test_vendored_assets_match_their_manifest_and_nothing_loads_from_elsewhere():
    base = os.path.join(ROOT, "gitml", "ui", "static", "vendor")
    manifest = json.load(open(os.path.join(base, "MANIFEST.json")))
    listed = set()
    for package in manifest.values():
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]) and package["license"]
        for name, digest in package["files"].items():
            listed.add(name)
            assert hashlib.sha256(open(os.path.join(base, name), "rb").read()).hexdigest() == digest, name
        assert any(name.endswith("LICENSE") for name in package["files"])
    on_disk = {os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs} - {"MANIFEST.json"}
    assert on_disk == listed
    templates = os.path.join(ROOT, "gitml", "ui", "templates")
    for name in os.listdir(templates):
        text = open(os.path.join(templates, name)).read()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name  # no CDN: works offline


def test_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingExtraError, match=r'uvicorn: pip install "gitml\[ui\]"'):
        check_installed()


def test_cli_help_does_not_import_the_ui(tmp_path):
    out = run_python(
        "import sys\nfrom gitml.cli.main import cli\n"
        "try:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'gitml.ui', 'numpy') if m in sys.modules))",
        cwd=tmp_path,
    )
    assert out.stdout.strip().endswith("[]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("free", [False, True], ids=["port", "port-0"])
def test_gitml_ui_serves_the_repository(client, repo, free):
    """On the port asked for, or with --port 0 on a free one, whose URL it prints."""
    run = client.create_run(run_name="served").info.run_id
    client.set_terminated(run)
    port = 0 if free else _free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    server = subprocess.Popen(
        [sys.executable, "-m", "gitml.cli.main", "-C", str(repo), "ui", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stderr.readline()
        printed = re.search(r"serving http://127\.0\.0\.1:(\d+)/ ", line)
        assert printed and int(printed.group(1)) != 0 and (free or int(printed.group(1)) == port), line
        port = int(printed.group(1))
        body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=10).read())
        assert [r["run_name"] for r in body["rows"]] == ["served"]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": "attacker.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_gitml_ui_does_not_create_a_repository(tmp_path):
    from click.testing import CliRunner

    from gitml.cli.main import cli

    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "ui", "--port", "1"])
    assert result.exit_code == 1 and not (tmp_path / "gitml-runs").exists()  # refused before listening
