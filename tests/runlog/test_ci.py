"""Runs logged from CI carry the job's metadata; a CI checkout without runs gets a hint."""

import json

from click.testing import CliRunner

import gitml
from gitml.cli.main import cli
from gitml.runlog.ci import ci_tags, missing_runs_hint


def test_github_actions_pull_request_from_ref_and_event_file(tmp_path):
    env = {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "team/churn",
        "GITHUB_RUN_ID": "991",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_SHA": "a" * 40,
        "GITHUB_REF": "refs/pull/42/merge",
    }
    assert ci_tags(env) == {
        "gitml.ci.provider": "github",
        "gitml.ci.job_url": "https://github.example/team/churn/actions/runs/991/attempts/2",
        "gitml.ci.pipeline_id": "991",
        "gitml.ci.pull_request": "42",
        "gitml.ci.commit": "a" * 40,
    }
    # pull_request_target runs on the base branch's ref: the number comes from the event file
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"sha": "b" * 40}}}))
    env.update(GITHUB_REF="refs/heads/main", GITHUB_EVENT_PATH=str(event))
    assert ci_tags(env)["gitml.ci.pull_request"] == "7"
    # a push build: no number; a garbled event file leaves the number out, never the run
    event.write_text("{not json")
    assert "gitml.ci.pull_request" not in ci_tags(env)
    event.write_text(json.dumps({"pull_request": {"number": True}}))
    assert "gitml.ci.pull_request" not in ci_tags(env)


def test_gitlab_and_generic_ci():
    gitlab = {
        "GITLAB_CI": "true",
        "CI_JOB_URL": "https://gitlab.example/t/c/-/jobs/5",
        "CI_PIPELINE_ID": "77",
        "CI_MERGE_REQUEST_IID": "3",
        "CI_COMMIT_SHA": "c" * 40,
    }
    assert ci_tags(gitlab) == {
        "gitml.ci.provider": "gitlab",
        "gitml.ci.job_url": "https://gitlab.example/t/c/-/jobs/5",
        "gitml.ci.pipeline_id": "77",
        "gitml.ci.pull_request": "3",
        "gitml.ci.commit": "c" * 40,
    }
    assert ci_tags({"CI": "true", "BUILD_URL": "https://jenkins/job/1\n"}) == {
        "gitml.ci.provider": "ci",
        "gitml.ci.job_url": "https://jenkins/job/1",
    }
    assert ci_tags({"CI": "false"}) == {} and ci_tags({}) == {}
    assert "gitml.ci.job_url" not in ci_tags({"CI": "1", "BUILD_URL": "a\x00b"})  # unprintable: left out


def test_a_run_started_in_ci_is_tagged_and_searchable(client, monkeypatch, tmp_path):
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", "12")
    monkeypatch.setenv("CI_PIPELINE_ID", "400")
    run = client.create_run("0", run_name="from-ci")
    client.set_terminated(run.info.run_id)
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["gitml.ci.provider"] == "gitlab" and tags["gitml.ci.pull_request"] == "12"
    found = client.search_rows(filter_string="tags.`gitml.ci.pull_request` = '12'")
    assert [r["run_id"] for r in found] == [run.info.run_id]
    # the keys stay reserved: a user cannot set one
    import pytest

    with pytest.raises(gitml.InvalidInputError, match="reserved"):
        client.set_tag(run.info.run_id, "gitml.ci.pull_request", "13")


def test_ci_checkout_without_runs_gets_a_hint(repo, monkeypatch):
    assert missing_runs_hint({"CI": "true"}, has_runs=True) is None
    assert missing_runs_hint({}, has_runs=False) is None
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = CliRunner().invoke(cli, ["-C", str(repo), "runs"])
    assert result.exit_code == 0 and "gitml fetch" in result.stderr and len(result.stderr.splitlines()) == 1
    with gitml.start_run():
        pass
    gitml.flush()
    result = CliRunner().invoke(cli, ["-C", str(repo), "runs"])
    assert result.exit_code == 0 and "gitml fetch" not in result.stderr
