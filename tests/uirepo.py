"""A repository for gitml ui's tests: hostile names, nested runs, a spike, artifacts."""

from __future__ import annotations

import json

HOSTILE = "<script>alert(1)</script>"
HOSTILE_USER = 'Mal & "Eve" onclick=alert(2)'  # git keeps no '<' or '>' in a name
SPIKE_STEP, SPIKE = 12_345, 1000.0
POINTS = 20_000
MLMODEL = """artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    python_version: 3.11.7
  sklearn:
    sklearn_version: 1.5.0
signature:
  inputs: '[{"type": "double", "name": "x1"}, {"type": "long", "name": "x2"}]'
  outputs: '[{"type": "double", "name": "y"}]'
run_id: abc
"""


def build(client) -> dict:
    """Runs of experiment ``exp <b>1</b>``: ids by role."""
    exp = client.create_experiment("exp <b>1</b>")
    ids = {}
    parent = client.create_run(exp, run_name=HOSTILE).info.run_id
    ids["parent"] = parent
    client.log_batch(
        parent,
        params=[("lr", "0.1"), ("model", "<img src=x onerror=alert(1)>")],
        tags=[("note", "<i>hi</i>")],
        metrics=[
            ("loss", (SPIKE if i == SPIKE_STEP else 1.0 / (i + 1)), 1_700_000_000_000 + i, i) for i in range(POINTS)
        ],
    )
    client.log_metric(parent, "acc", 0.5)
    client.log_text(parent, "<html><script>alert(1)</script></html>", "page.html")
    client.log_text(parent, '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>', "pic.svg")
    client.log_text(parent, "a,b\n1,2\n3,<x>\n", "data/t.csv")
    client.log_dict(parent, {"a": [1, 2]}, "cfg.json")
    client.log_text(parent, "line of text\n" * 40_000, "big.txt")  # 520,000 bytes
    client.log_text(parent, MLMODEL, "model/MLmodel")
    client.set_terminated(parent)
    for name, lr, acc in (("child-a", "0.01", 0.7), ("child-b", "0.001", 0.9)):
        run = client.create_run(exp, run_name=name, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_batch(
            run,
            params=[("lr", lr), ("model", "cnn")],
            metrics=[("acc", acc, 1_700_000_000_000, 0)]
            + [("loss", 1.0 / (s + 2), 1_700_000_000_000 + s, s) for s in range(50)],
        )
        client.set_terminated(run)
        ids[name] = run
    other = client.create_run(exp, run_name="other").info.run_id
    client.log_batch(other, params=[("lr", "0.1"), ("model", "mlp")], metrics=[("acc", 0.8, 1_700_000_000_000, 0)])
    client.set_terminated(other)
    ids["other"] = other
    ids["experiment"] = exp
    return ids


def read_json(response):
    return json.loads(response.text)


def build_registry(client, path, keys) -> dict:
    """Model ``churn`` over ``build``'s runs, under a policy requiring trusted ssh-signed
    tags for production: v1.0.0 (the parent run, a hostile description, registered by a
    hostile user name) in production by a trusted tag, v2.0.0 (run ``other``) in staging,
    and a production tag for v2.0.0 signed by a key the policy does not trust (ignored)."""
    import os
    import subprocess

    def git(*args, env=None):
        return subprocess.run(
            ["git", "-C", str(path), *args],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        ).stdout

    for name in ("trusted", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)], check=True)
    os.makedirs(path / ".gitml", exist_ok=True)
    (path / ".gitml" / "allowed_signers").write_text(
        f'bot@example.com namespaces="git" {(keys / "trusted.pub").read_text().strip()}\n'
    )
    (path / ".gitml" / "registry.yaml").write_text(
        "require_signature: [production]\nallowed_signers: .gitml/allowed_signers\n"
    )
    git("add", ".gitml")
    git("commit", "-qm", "registry policy")
    git("config", "gpg.format", "ssh")
    git("config", "user.signingkey", str(keys / "trusted"))
    git("config", "user.name", HOSTILE_USER)
    ids = {}
    parent = client.search_rows(filter_string=f"run_name = '{HOSTILE}'")[0]["run_id"]
    other = client.search_rows(filter_string="run_name = 'other'")[0]["run_id"]
    client.log_text(other, MLMODEL, "model/MLmodel")
    reg = client.registry
    pinned = os.environ.get("GIT_COMMITTER_DATE")
    os.environ["GIT_COMMITTER_DATE"] = (
        "1700000000 +0000"  # tags are ordered by time (GTO's rule): the stranger's is newest
    )
    try:
        reg.register("churn", parent, "model", description=HOSTILE)
        reg.register("churn", other, "model")
        reg.assign("churn", "v1.0.0", "production", sign_tag=True)
        reg.assign("churn", "v2.0.0", "staging")
    finally:
        if pinned is None:
            del os.environ["GIT_COMMITTER_DATE"]
        else:
            os.environ["GIT_COMMITTER_DATE"] = pinned
    v2 = git("rev-parse", "churn@v2.0.0^{commit}").strip()
    git(
        "-c",
        f"user.signingkey={keys / 'stranger'}",
        "tag",
        "-s",
        "-m",
        "promote v2",
        "churn#production#9",
        v2,
        env={"GIT_COMMITTER_DATE": "1700000100 +0000"},
    )
    ids.update(model="churn", parent=parent, other=other)
    return ids
