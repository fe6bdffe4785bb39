"""The CI templates (hooks/ci/) run as CI runs them: each step's script executed with the
provider's environment variables, in fresh checkouts of a bare remote, a local HTTP
server standing in for the GitHub and GitLab APIs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

import gitml
import gitml.ops
from tests.conftest import ROOT, git

CI = os.path.join(ROOT, "hooks", "ci")
TRAIN = """\
import os
import gitml
import gitml.sklearn
from sklearn.linear_model import LogisticRegression

lr = float(open("lr.txt").read())
with gitml.start_run():
    gitml.log_param("lr", lr)
    for step in range(3):
        gitml.log_metric("loss", lr / (step + 1), step=step)
    gitml.log_metric("accuracy", 1 - lr / 10)
    model = LogisticRegression(C=lr).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    gitml.sklearn.log_model(model, "model")
"""


ACTIONS_BOT = {"login": "github-actions[bot]", "id": 41898282}


class FakeAPI(BaseHTTPRequestHandler):
    """GitHub's and GitLab's comment endpoints, as they answer: who a token is (``GET /user``;
    a token it does not know is Actions' own, which gets 403 there and writes as
    github-actions[bot]), list (pages of ``per_page``, ``Link: <...>; rel="next"``),
    create (written by the token's user), edit by id (``PATCH`` on GitHub, ``PUT`` on GitLab)."""

    calls: list = []
    comments: list = []  # {"id", "body", "user": {...}, "author": {...}}
    users: dict = {}  # token -> {"login", "id"}

    def _reply(self, data, status: int = 200, link: str | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if link:
            self.send_header("Link", f'<{link}>; rel="next"')
        self.end_headers()
        self.wfile.write(body)

    def _user(self) -> dict | None:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ") or self.headers.get("PRIVATE-TOKEN", "")
        return self.users.get(token)

    def do_GET(self):  # noqa: N802
        self.calls.append(("GET", self.path, None, dict(self.headers)))
        path, _, query = self.path.partition("?")
        if path == "/user":
            user = self._user()
            if user is None:
                return self._reply({"message": "Resource not accessible by integration"}, 403)
            return self._reply({**user, "username": user["login"]})
        args = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        size, page = int(args.get("per_page", 30)), int(args.get("page", 1))
        more = len(self.comments) > page * size
        link = f"http://{self.headers['Host']}{path}?per_page={size}&page={page + 1}" if more else None
        self._reply(self.comments[(page - 1) * size : page * size], link=link)

    def _write(self, method):
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append((method, self.path, data, dict(self.headers)))
        if method == "POST":
            user = self._user() or ACTIONS_BOT
            self.comments.append(
                {
                    "id": len(self.comments) + 1,
                    "body": data["body"],
                    "user": user,
                    "author": {"username": user["login"], "id": user["id"]},
                }
            )
        else:
            (edited,) = [c for c in self.comments if c["id"] == int(self.path.rsplit("/", 1)[1])]
            edited["body"] = data["body"]
        self._reply({})

    def do_POST(self):  # noqa: N802
        self._write("POST")

    def do_PATCH(self):  # noqa: N802
        self._write("PATCH")

    def do_PUT(self):  # noqa: N802
        self._write("PUT")

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    FakeAPI.calls, FakeAPI.comments = [], []
    FakeAPI.users = {"glpat": {"login": "project_9_bot", "id": 9001}, "ghp-mallory": {"login": "mallory", "id": 666}}
    server = HTTPServer(("127.0.0.1", 0), FakeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", FakeAPI
    server.shutdown()
    server.server_close()


@pytest.fixture
def team(tmp_path, monkeypatch, installed_python):
    """A bare remote with a training project on main, a developer's clone, a shared artifact
    store; the CI's Python (GITML_PYTHON, first on the PATH) has this checkout's gitml installed."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    dev = tmp_path / "dev"
    git(tmp_path, "clone", "-q", str(origin), str(dev))
    (dev / "train.py").write_text(TRAIN)
    (dev / "lr.txt").write_text("0.1\n")
    (dev / "MLproject").write_text("name: churn\nentry_points:\n  main:\n    command: python train.py\n")
    git(dev, "add", ".")
    git(dev, "commit", "-qm", "training")
    git(dev, "push", "-q", "origin", "HEAD:main")
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "team-store"))
    monkeypatch.setenv("PYTHONPATH", ROOT)
    monkeypatch.setenv("GITML_PYTHON", installed_python)
    monkeypatch.setenv("PATH", os.path.dirname(installed_python) + os.pathsep + os.environ["PATH"])
    return origin, dev


def _checkout(origin, where, ref: str, *, branch: str | None = None):
    """What actions/checkout and GitLab's clone do: a clone (no refs/gitml/*), at ``ref``."""
    git(where.parent, "clone", "-q", str(origin), str(where))
    git(where, "fetch", "-q", "origin", ref)
    if branch:
        git(where, "checkout", "-q", "-B", branch, "FETCH_HEAD")
    else:
        git(where, "checkout", "-q", "--detach", "FETCH_HEAD")
    return where


def _github_if(expr: str, context: dict) -> bool:
    """The few GitHub expressions action.yml uses, evaluated as GitHub would."""
    py = re.sub(r"startsWith\(([\w.]+),\s*'([^']*)'\)", r"(\1).startswith('\2')", expr)
    py = py.replace("||", " or ").replace("&&", " and ").replace("!(", "not (")
    py = re.sub(r"github\.[\w.]+", lambda m: repr(context[m.group(0)]), py)
    return bool(eval(py))  # noqa: S307 - the test's own template


def _run_action(checkout, env: dict, inputs: dict, context: dict) -> list[subprocess.CompletedProcess]:
    with open(os.path.join(CI, "action.yml")) as f:
        action = yaml.safe_load(f)
    values = {k: str(v.get("default", "")) for k, v in action["inputs"].items()} | inputs
    results = []
    for step in action["runs"]["steps"]:
        if "if" in step and not _github_if(step["if"], context):
            continue
        step_env = {
            k: re.sub(
                r"\$\{\{\s*(inputs\.[\w-]+|github\.[\w.]+)\s*\}\}",
                lambda m: values[m.group(1)[7:]] if m.group(1).startswith("inputs.") else str(context[m.group(1)]),
                str(v),
            )
            for k, v in step.get("env", {}).items()
        }
        full = {**os.environ, **env, **step_env, "GITHUB_ACTION_PATH": CI}
        result = subprocess.run(
            [step["shell"], "-e", "-c", step["run"]], cwd=checkout, env=full, capture_output=True, text=True
        )
        results.append(result)
        assert result.returncode == 0, f"{step['name']}: {result.stdout}\n{result.stderr}"
    return results


def _github_env(tmp_path, event: str, ref: str, **extra) -> tuple[dict, dict]:
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_REF": ref,
        "GITHUB_REPOSITORY": "team/churn",
        "GITHUB_RUN_ID": "1001",
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        **extra,
    }
    context = {
        "github.event_name": event,
        "github.head_ref": extra.get("GITHUB_HEAD_REF", ""),
        "github.event.repository.default_branch": "main",
    }
    return env, context


@pytest.mark.timeout(300)
def test_github_action_logs_runs_and_reports_on_pull_requests(team, tmp_path, api):
    origin, dev = team
    url, fake = api
    # a push to main: CI trains and pushes the run
    env, context = _github_env(tmp_path, "push", "refs/heads/main", GITHUB_SHA=git(dev, "rev-parse", "HEAD").strip())
    _run_action(_checkout(origin, tmp_path / "ci-main", "main", branch="main"), env, {}, context)
    with gitml.ops.Operations(origin) as remote:
        (main_run,) = remote.search_rows()
    assert main_run["tags"]["gitml.ci.provider"] == "github" and main_run["tags"]["gitml.ci.job_url"].endswith(
        "/runs/1001"
    )

    # a pull request changing the learning rate: CI trains, compares with main's run, comments
    git(dev, "checkout", "-qb", "feature")
    (dev / "lr.txt").write_text("0.5\n")
    git(dev, "commit", "-qam", "a larger learning rate")
    git(dev, "push", "-q", "origin", "feature")
    env, context = _github_env(
        tmp_path,
        "pull_request",
        "refs/pull/5/merge",
        GITHUB_BASE_REF="main",
        GITHUB_HEAD_REF="feature",
        GITHUB_API_URL=url,
    )
    pr = _checkout(origin, tmp_path / "ci-pr", "feature")
    _run_action(pr, env, {"token": "t0ken"}, context)
    report = (pr / "gitml-report" / "report.md").read_text()
    assert f"`{main_run['run_id'][:8]}` (baseline)" in report
    assert "| accuracy | **0.99** ★ | 0.95 (-0.04) |" in report and "| lr | 0.1 | **0.5** |" in report
    assert (pr / "gitml-report" / "compare-loss.png").exists()
    assert report in (tmp_path / "summary.md").read_text()
    (post,) = [c for c in fake.calls if c[0] == "POST"]
    assert post[1] == "/repos/team/churn/issues/5/comments" and post[3]["Authorization"] == "Bearer t0ken"
    assert post[2]["body"].endswith(report)
    with gitml.ops.Operations(origin) as remote:
        assert [r["tags"]["gitml.ci.pull_request"] for r in remote.search_rows(filter_string="params.lr = '0.5'")] == [
            "5"
        ]
    # the report again (a second push to the pull request): the comment is edited, not repeated
    subprocess.run(
        ["sh", os.path.join(CI, "report.sh")],
        cwd=pr,
        check=True,
        capture_output=True,
        env={**os.environ, **env, "GITHUB_TOKEN": "t0ken"},
    )
    assert [c[0] for c in fake.calls if c[0] != "GET"] == ["POST", "PATCH"]


@pytest.mark.timeout(300)
def test_github_action_checks_a_promotion_and_applies_it_after_the_merge(team, tmp_path):
    origin, dev = team
    subprocess.run([sys.executable, "train.py"], cwd=dev, check=True)  # a run logged on a laptop
    with gitml.ops.Operations(dev) as c:
        (main_run,) = c.search_rows()
    # a promotion by pull request: register the model, propose, CI checks, merge, CI applies
    for args in (
        ["registry", "register", "churn", f"{main_run['run_id']}:model"],
        ["push", "origin"],
        ["registry", "propose", "churn", "v1.0.0", "production"],
    ):
        subprocess.run([sys.executable, "-m", "gitml", *args], cwd=dev, check=True, capture_output=True)
    branch = "gitml/promote/churn/production/v1.0.0"
    git(dev, "push", "-q", "origin", branch)
    env, context = _github_env(
        tmp_path, "pull_request", "refs/pull/6/merge", GITHUB_BASE_REF="main", GITHUB_HEAD_REF=branch
    )
    promo = _checkout(origin, tmp_path / "ci-promo", branch)
    results = _run_action(promo, env, {}, context)
    assert len(results) == 2  # set-up and report: a promotion trains nothing
    check = (promo / "gitml-report" / "registry.md").read_text()
    assert "churn: production → v1.0.0" in check and "all checks pass" in check
    git(dev, "merge", "-q", "--ff-only", branch)
    git(dev, "push", "-q", "origin", "main")
    env, context = _github_env(tmp_path, "push", "refs/heads/main")
    _run_action(_checkout(origin, tmp_path / "ci-merged", "main", branch="main"), env, {}, context)
    assert "refs/tags/churn#production#" in git(origin, "for-each-ref", "refs/tags")
    # anyone resolves it after a fetch
    reader = tmp_path / "reader"
    git(tmp_path, "clone", "-q", str(origin), str(reader))
    subprocess.run([sys.executable, "-m", "gitml", "fetch"], cwd=reader, check=True, capture_output=True)
    with gitml.ops.Operations(reader) as c:
        assert c.get_model_version_by_alias("churn", "production").run_id == main_run["run_id"]


def test_gitlab_merge_request_job_reports_as_a_note(team, tmp_path, api):
    origin, dev = team
    url, fake = api
    with open(os.path.join(CI, "gitlab-ci.yml")) as f:
        pipeline = yaml.safe_load(f)
    shutil.copytree(CI, dev / "hooks" / "ci")  # as the template says: hooks/ci/ copied into the project
    git(dev, "add", "hooks")
    git(dev, "commit", "-qm", "gitml CI")
    git(dev, "push", "-q", "origin", "HEAD:main")
    git(dev, "checkout", "-qb", "feature")
    (dev / "lr.txt").write_text("0.3\n")
    git(dev, "commit", "-qam", "lr 0.3")
    git(dev, "push", "-q", "origin", "feature")
    env = {
        **os.environ,
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "3",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_DEFAULT_BRANCH": "main",
        "CI_API_V4_URL": url,
        "CI_PROJECT_ID": "9",
        "GITLAB_TOKEN": "glpat",
        "CI_PIPELINE_ID": "77",
        "CI_JOB_URL": "https://gitlab.example/team/churn/-/jobs/5",
        "GITML_TRAIN": pipeline["variables"]["GITML_TRAIN"],
    }
    checkout = _checkout(origin, tmp_path / "ci-mr", "feature")
    for line in pipeline["default"]["before_script"] + pipeline["gitml-train"]["script"]:
        result = subprocess.run(["sh", "-e", "-c", line], cwd=checkout, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{line}: {result.stderr}"
    (post,) = [c for c in fake.calls if c[0] == "POST"]
    assert post[1] == "/projects/9/merge_requests/3/notes" and post[3]["Private-Token"] == "glpat"
    assert "| lr | 0.3 |" in post[2]["body"] and "(baseline)" in post[2]["body"]  # main has no runs: the new run alone
    with gitml.ops.Operations(origin) as remote:
        (run,) = remote.search_rows()
    assert run["tags"]["gitml.ci.pull_request"] == "3" and run["tags"]["gitml.ci.pipeline_id"] == "77"


HOSTILE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


@pytest.mark.timeout(300)
def test_code_committed_in_a_pull_request_never_runs_as_gitml(team, tmp_path, api):
    """A pull request commits a top-level gitml/ package: every step (set-up, train and push,
    report, comment, registry check, apply) runs the installed gitml, never the committed one."""
    origin, dev = team
    url, fake = api
    marker = tmp_path / "attacker-code-ran"
    git(dev, "checkout", "-qb", "hostile")
    (dev / "gitml").mkdir()
    for name in ("__init__.py", "__main__.py"):
        (dev / "gitml" / name).write_text(HOSTILE.format(marker=str(marker)))
    (dev / ".gitml").mkdir()
    (dev / ".gitml" / "stages.yaml").write_text("{}\n")  # a promotion file: the registry steps run too
    # the training itself runs the pull request's code, by design; here it imports the installed
    # gitml (python -I) so that the marker tells about gitml's own steps alone
    (dev / "MLproject").write_text("name: churn\nentry_points:\n  main:\n    command: python -I train.py\n")
    git(dev, "add", ".")
    git(dev, "commit", "-qm", "a gitml of our own")
    git(dev, "push", "-q", "origin", "hostile")
    env, context = _github_env(
        tmp_path,
        "pull_request",
        "refs/pull/8/merge",
        GITHUB_BASE_REF="main",
        GITHUB_HEAD_REF="hostile",
        GITHUB_API_URL=url,
    )
    pr = _checkout(origin, tmp_path / "ci-pr", "hostile")
    env["PYTHONPATH"] = os.pathsep + "."  # even with the checkout on the path
    results = _run_action(pr, env, {"token": "t0ken"}, context)
    assert len(results) == 3 and not marker.exists()
    assert "| lr | 0.1 |" in (pr / "gitml-report" / "report.md").read_text()
    assert "No stage changes" in (pr / "gitml-report" / "registry.md").read_text()
    assert [c[0] for c in fake.calls if c[0] != "GET"] == ["POST"]
    with gitml.ops.Operations(origin) as remote:
        assert [r["tags"]["gitml.ci.pull_request"] for r in remote.search_rows()] == ["8"]
    # merged: the push build trains, applies the (empty) promotions and pushes
    env, context = _github_env(tmp_path, "push", "refs/heads/main", PYTHONPATH=os.pathsep + ".")
    merged = _checkout(origin, tmp_path / "ci-merged", "hostile", branch="main")
    assert len(_run_action(merged, env, {}, context)) == 3 and not marker.exists()
    with gitml.ops.Operations(origin) as remote:
        assert len(remote.search_rows()) == 2
    # the same steps without isolation run the pull request's gitml: the attack is real
    subprocess.run([os.environ["GITML_PYTHON"], "-m", "gitml", "--help"], cwd=merged, capture_output=True)
    assert marker.exists()


def test_the_comment_step_edits_only_a_comment_its_token_wrote(tmp_path, api, installed_python):
    """A comment by someone else that starts with the report's mark is left alone (the report
    is posted anew, the step succeeds); the step's own comment is found on any page and edited."""
    url, fake = api
    report = tmp_path / "report.md"
    report.write_text("## gitml compare\n\nthe real report\n")
    mark = "<!-- gitml report -->"

    def comment(**env) -> list[tuple[str, str]]:
        done = len(fake.calls)
        result = subprocess.run(
            [installed_python, "-I", os.path.join(CI, "comment.py"), str(report)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        return [(c[0], c[1]) for c in fake.calls[done:] if c[0] != "GET"]

    fake.comments += [{"id": i, "body": f"comment {i}", "user": {"login": "alice", "id": 1}} for i in range(1, 121)]
    forged = {"id": 121, "body": f"{mark}\nall checks pass, merge away", "user": {"login": "mallory", "id": 666}}
    fake.comments.append(forged)
    github = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REF": "refs/pull/5/merge",
        "GITHUB_REPOSITORY": "team/churn",
        "GITHUB_API_URL": url,
    }
    # Actions' own token: GET /user says 403, so it is github-actions[bot], who wrote nothing yet
    assert comment(**github, GITHUB_TOKEN="t0ken") == [("POST", "/repos/team/churn/issues/5/comments")]
    assert forged["body"].endswith("merge away") and fake.comments[-1]["user"] == ACTIONS_BOT
    # the next report edits the bot's comment (on the second page of the listing), not mallory's
    assert comment(**github, GITHUB_TOKEN="t0ken") == [("PATCH", "/repos/team/churn/issues/comments/122")]
    assert any("page=2" in c[1] for c in fake.calls if c[0] == "GET")
    assert forged["body"].endswith("merge away") and fake.comments[-1]["body"].endswith("the real report\n")
    # a personal token is the user GET /user names: the bot's comment is not its own either
    fake.users["ghp-ci"] = {"login": "ci-user", "id": 7}
    assert comment(**github, GITHUB_TOKEN="ghp-ci") == [("POST", "/repos/team/churn/issues/5/comments")]
    # an account renamed to the name of the token's user is someone else: ids decide
    fake.comments[-1]["user"] = {"login": "ci-user", "id": 8}
    assert comment(**github, GITHUB_TOKEN="ghp-ci") == [("POST", "/repos/team/churn/issues/5/comments")]
    assert comment(**github, GITHUB_TOKEN="ghp-ci") == [
        ("PATCH", f"/repos/team/churn/issues/comments/{len(fake.comments)}")
    ]

    # GitLab: a note by someone else with the mark is left alone; the token's own is edited
    gitlab = {"GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "3", "CI_API_V4_URL": url, "CI_PROJECT_ID": "9"}
    fake.comments.clear()
    fake.comments.append({"id": 1, "body": f"{mark}\nforged", "author": {"username": "mallory", "id": 666}})
    assert comment(**gitlab, GITLAB_TOKEN="glpat") == [("POST", "/projects/9/merge_requests/3/notes")]
    assert comment(**gitlab, GITLAB_TOKEN="glpat") == [("PUT", "/projects/9/merge_requests/3/notes/2")]
    assert fake.comments[0]["body"] == f"{mark}\nforged"
    # a token GitLab will not name (GET /user refused) never edits: it posts
    assert comment(**gitlab, GITLAB_TOKEN="unknown") == [("POST", "/projects/9/merge_requests/3/notes")]
