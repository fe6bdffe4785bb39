"""GTO 1.10.1 (in its own venv) reads gitml's registry and agrees on versions and stages."""

from __future__ import annotations

import json
import os
import subprocess

import gitml
import gitml.ops
from gitml.registry.tags import Action, RegistryTag
from tests.gto_venv import gto_python  # noqa: F401  (the fixture)
from tests.registry.test_registry import _run


def _gto(python: str, repo, *args: str):
    gto = os.path.join(os.path.dirname(python), "gto")
    out = subprocess.run([gto, *args], cwd=repo, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_gto_parses_every_tag_name_gitml_makes(gto_python):  # noqa: F811
    names = [
        t.name
        for t in (
            RegistryTag(Action.REGISTER, "team/churn_2-b", version="v10.2.3-rc.1+build.5"),
            RegistryTag(Action.DEREGISTER, "churn", version="v1.0.0", counter=7),
            RegistryTag(Action.ASSIGN, "a", stage="production", counter=1),
            RegistryTag(Action.UNASSIGN, "x/y", stage="Staging-2", counter=12),
            RegistryTag(Action.DEPRECATE, "churn", counter=3),
        )
    ]
    code = (
        "import json, sys\nfrom gto.tag import parse_name\n"
        "parsed = [parse_name(n) for n in json.loads(sys.argv[1])]\n"
        "print(json.dumps([{k: getattr(v, 'value', v) for k, v in p.items()} for p in parsed]))"
    )
    out = subprocess.run([gto_python, "-c", code, json.dumps(names)], capture_output=True, text=True, check=True)
    parsed = json.loads(out.stdout)
    assert [p["action"] for p in parsed] == ["register", "deregister", "assign", "unassign", "deprecate"]
    assert parsed[0]["name"] == "team/churn_2-b" and parsed[0]["version"] == "v10.2.3-rc.1+build.5"
    assert parsed[2] == {"name": "a", "stage": "production", "action": "assign", "counter": 1}


def test_gto_agrees_on_versions_and_stages(repo, monkeypatch, gto_python):  # noqa: F811
    gitml.set_tracking_uri(str(repo))
    clock = iter(range(1_700_000_000, 1_700_100_000, 10))  # GTO orders by tag time: distinct pinned times

    def tick():
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"{next(clock)} +0000")

    with gitml.ops.Operations(repo) as c:
        runs = [_run(c, n) for n in range(4)]
        reg = c.registry
        for run_id in runs[:3]:
            tick()
            reg.register("churn", run_id)
        tick()
        reg.register("fraud", runs[3], version="v0.3.0")
        for version, stage in [("1", "production"), ("2", "staging"), ("2", "production"), ("3", "staging")]:
            tick()
            reg.assign("churn", version, stage)
        tick()
        reg.unassign("churn", "staging")  # staging: v3 then v2 undone, empty
        tick()
        reg.deregister("churn", "v1.0.0")
        tick()
        reg.assign("fraud", "v0.3.0", "dev")
        ours = reg.models()
    shown = _gto(gto_python, repo, "show", "--json")
    assert set(shown) == set(ours) == {"churn", "fraud"}
    for name, state in ours.items():
        assert shown[name]["version"] == state.latest.version
        assert {s: v for s, v in shown[name]["stage"].items() if v} == state.stages
    assert ours["churn"].stages == {"production": "v2.0.0"}
    versions = _gto(gto_python, repo, "show", "churn", "--json")
    live = {v.version: bool(v.stages) for v in ours["churn"].versions.values() if not v.deregistered}
    assert (
        {v["version"]: v["stages"] != [] for v in versions if v["registrations"]}
        == live
        == {"v2.0.0": True, "v3.0.0": False}
    )
