"""gitml CI: post a Markdown report as a comment on the pull request (GitHub, with
GITHUB_TOKEN) or merge request (GitLab, with GITLAB_TOKEN). Without a token, or outside a
pull/merge request, it does nothing. A comment it posted before is updated, not repeated.

    python comment.py REPORT.md
"""

import json
import os
import sys
import urllib.request

from gitml.tracking.ci import ci_tags

MARK = "<!-- gitml report -->"
MAX_BODY = 60_000  # GitHub refuses comments over 65,536 characters


def _call(method: str, url: str, headers: dict, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def main(path: str) -> int:
    env = os.environ
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if len(text) > MAX_BODY:
        text = text[:MAX_BODY] + "\n\n(cut; the whole report is in the job's artifacts)\n"
    body = f"{MARK}\n{text}"
    number = ci_tags(env).get("gitml.ci.pull_request")
    if env.get("GITHUB_TOKEN") and env.get("GITHUB_ACTIONS") and number:
        api = f"{env.get('GITHUB_API_URL', 'https://api.github.com')}/repos/{env['GITHUB_REPOSITORY']}/issues/{number}/comments"
        headers = {"Authorization": f"Bearer {env['GITHUB_TOKEN']}", "Accept": "application/vnd.github+json"}
        key, edit = "body", "PATCH"
        listing = _call("GET", api + "?per_page=100", headers)
        url_of = lambda c: c["url"]  # noqa: E731
    elif env.get("GITLAB_TOKEN") and env.get("GITLAB_CI") and number:
        api = f"{env['CI_API_V4_URL']}/projects/{env['CI_PROJECT_ID']}/merge_requests/{number}/notes"
        headers = {"PRIVATE-TOKEN": env["GITLAB_TOKEN"]}
        key, edit = "body", "PUT"
        listing = _call("GET", api + "?per_page=100", headers)
        url_of = lambda c: f"{api}/{c['id']}"  # noqa: E731
    else:
        print("gitml: no token or no pull/merge request: the report is not posted", file=sys.stderr)
        return 0
    mine = [c for c in listing or [] if isinstance(c, dict) and str(c.get(key, "")).startswith(MARK)]
    if mine:
        _call(edit, url_of(mine[-1]), headers, {key: body})
        print("gitml: report comment updated", file=sys.stderr)
    else:
        _call("POST", api, headers, {key: body})
        print("gitml: report posted as a comment", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
