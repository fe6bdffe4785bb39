"""Runs logged from CI: what the environment says about the job, as run tags.

When the environment says the process runs in CI, a new run gets these tags (under
``gitml.``, reserved, so a user's tag never collides):

| tag | GitHub Actions | GitLab CI | generic (``CI=true``) |
| --- | --- | --- | --- |
| ``gitml.ci.provider`` | ``github`` | ``gitlab`` | ``ci`` |
| ``gitml.ci.job_url`` | server/repo/actions/runs/RUN_ID | ``CI_JOB_URL`` | ``CI_JOB_URL``, ``BUILD_URL`` |
| ``gitml.ci.pipeline_id`` | ``GITHUB_RUN_ID`` | ``CI_PIPELINE_ID`` | ``CI_PIPELINE_ID``, ``BUILD_ID`` |
| ``gitml.ci.pull_request`` | from ``GITHUB_REF`` or the event file | ``CI_MERGE_REQUEST_IID`` | — |
| ``gitml.ci.commit`` | ``GITHUB_SHA`` | ``CI_COMMIT_SHA`` | ``CI_COMMIT_SHA``, ``GIT_COMMIT`` |

GitHub has no variable for the pull request's number: ``GITHUB_REF`` is
``refs/pull/<N>/merge`` on ``pull_request`` events, and the event file
(``GITHUB_EVENT_PATH``) holds ``pull_request.number`` on the others
(``pull_request_target``, ``issue_comment`` has ``issue.number``).

    >>> ci_tags({"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/pull/7/merge"})["gitml.ci.pull_request"]
    '7'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

EVENT_FILE_MAX_BYTES = 16 << 20  # GitHub's event payloads are far smaller
_PULL_REF = re.compile(r"refs/pull/(\d+)/(?:merge|head)")


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def provider(environ: Mapping[str, str]) -> str | None:
    """``github``, ``gitlab``, ``ci`` (any other CI setting ``CI=true``), or None."""
    if _true(environ.get("GITHUB_ACTIONS")):
        return "github"
    if _true(environ.get("GITLAB_CI")):
        return "gitlab"
    if _true(environ.get("CI")):
        return "ci"
    return None


def _github_pull_request(environ: Mapping[str, str]) -> str | None:
    match = _PULL_REF.fullmatch(environ.get("GITHUB_REF", ""))
    if match:
        return match.group(1)
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            event = json.loads(f.read(EVENT_FILE_MAX_BYTES))
    except (OSError, ValueError):  # an unreadable event file leaves the number out, never the run
        return None
    if not isinstance(event, dict):
        return None
    for key in ("pull_request", "issue"):
        number = event.get(key, {}).get("number") if isinstance(event.get(key), dict) else None
        if isinstance(number, int) and not isinstance(number, bool):
            return str(number)
    return None


def ci_tags(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``gitml.ci.*`` tags of a run started in this environment ({} outside CI)."""
    kind = provider(environ)
    if kind is None:
        return {}
    get = environ.get
    if kind == "github":
        server, repository, run_id = (
            get("GITHUB_SERVER_URL", "https://github.com"),
            get("GITHUB_REPOSITORY"),
            get("GITHUB_RUN_ID"),
        )
        job_url = f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}" if repository and run_id else None
        if job_url and get("GITHUB_RUN_ATTEMPT", "1") not in ("", "1"):
            job_url += f"/attempts/{get('GITHUB_RUN_ATTEMPT')}"
        found = {
            "job_url": job_url,
            "pipeline_id": run_id,
            "pull_request": _github_pull_request(environ),
            "commit": get("GITHUB_SHA"),
        }
    elif kind == "gitlab":
        found = {
            "job_url": get("CI_JOB_URL"),
            "pipeline_id": get("CI_PIPELINE_ID"),
            "pull_request": get("CI_MERGE_REQUEST_IID"),
            "commit": get("CI_COMMIT_SHA"),
        }
    else:
        found = {
            "job_url": get("CI_JOB_URL") or get("BUILD_URL"),
            "pipeline_id": get("CI_PIPELINE_ID") or get("BUILD_ID"),
            "commit": get("CI_COMMIT_SHA") or get("GIT_COMMIT"),
        }
    tags = {"gitml.ci.provider": kind}
    for key, value in found.items():
        value = (value or "").strip()
        if value and value.isprintable() and len(value) <= 2000:  # a garbled variable is left out, not the run
            tags[f"gitml.ci.{key}"] = value
    return tags


def missing_runs_hint(environ: Mapping[str, str], has_runs: bool, remotes: Sequence[str] = ()) -> str | None:
    """A one-line hint for a repository without runs that may have some elsewhere: a CI
    checkout without ``refs/gitml/*`` (``actions/checkout`` and GitLab's clone fetch no
    custom refs), or a clone with a remote (``git clone`` fetches no custom refs either);
    else None."""
    if has_runs:
        return None
    if provider(environ) is not None:
        return "gitml: this CI checkout has no runs (refs/gitml/* were not fetched); `gitml fetch origin` brings them"
    if remotes:
        remote = "origin" if "origin" in remotes else remotes[0]
        return (
            f"gitml: no runs here yet; a clone brings no runs: if your team's runs are on {remote}, "
            f"`gitml pull {remote}` brings them"
        )
    return None


__all__ = ["ci_tags", "missing_runs_hint", "provider"]
