"""gitml CI: post a Markdown report as a comment on the pull request (GitHub, with
GITHUB_TOKEN) or merge request (GitLab, with GITLAB_TOKEN). Without a token, or outside a
pull/merge request, it does nothing. A comment it posted before is updated, not repeated:
only a comment written by the token's own identity (GitHub: ``GET /user``, or
github-actions[bot] for Actions' own token, which cannot read it, or GITML_COMMENT_AUTHOR;
GitLab: ``GET /user``). Anyone can write a comment that starts with the report's mark;
such a comment is left alone and the report posted anew.

    python -I comment.py REPORT.md
"""

import json
import os
import re
import sys
import urllib.error
import urllib.request

from gitml.runlog.ci import ci_tags

MARK = "<!-- gitml report -->"
MAX_BODY = 60_000  # GitHub refuses comments over 65,536 characters
MAX_PAGES = 50  # 5,000 comments, 100 a page
ACTIONS_BOT = "github-actions[bot]"  # who Actions' GITHUB_TOKEN writes as


def _call(method: str, url: str, headers: dict, body: dict | None = None):
    """The JSON answer and the URL of the next page (a ``Link: <...>; rel="next"`` header)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        found = re.search(r'<([^>]+)>\s*;\s*rel="next"', response.headers.get("Link", ""))
        return json.loads(response.read() or b"null"), found.group(1) if found else None


def _listing(url: str, headers: dict, root: str) -> list:
    """Every comment, page after page (pages of the same API only: the token goes nowhere else)."""
    out: list = []
    for _ in range(MAX_PAGES):
        page, next_url = _call("GET", url, headers)
        out += [c for c in page or [] if isinstance(c, dict)] if isinstance(page, list) else []
        if not next_url or not next_url.startswith(root + "/"):
            break
        url = next_url
    return out


def _whoami(root: str, headers: dict, fallback: str | None) -> dict | None:
    """``{"login", "id"}`` of the token's user; ``fallback`` (a login) when the API will not say."""
    try:
        me, _ = _call("GET", f"{root}/user", headers)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403, 404) and fallback:
            return {"login": fallback, "id": None}
        print(f"gitml: cannot tell who the token is ({e.code}): a new comment is posted", file=sys.stderr)
        return None
    login = (me.get("login") or me.get("username")) if isinstance(me, dict) else None
    return {"login": login, "id": me.get("id")} if login else None


def _by(comment: dict, author: str, me: dict | None) -> bool:
    """Whether ``comment`` was written by ``me`` (by id when both are known, else by login)."""
    who = comment.get(author)
    if me is None or not isinstance(who, dict):
        return False
    if me["id"] is not None and who.get("id") is not None:
        return who.get("id") == me["id"]
    return (who.get("login") or who.get("username")) == me["login"]


def main(path: str) -> int:
    env = os.environ
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if len(text) > MAX_BODY:
        text = text[:MAX_BODY] + "\n\n(cut; the whole report is in the job's artifacts)\n"
    body = f"{MARK}\n{text}"
    number = ci_tags(env).get("gitml.ci.pull_request")
    if env.get("GITHUB_TOKEN") and env.get("GITHUB_ACTIONS") and number:
        root = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        api = f"{root}/repos/{env['GITHUB_REPOSITORY']}/issues/{number}/comments"
        headers = {"Authorization": f"Bearer {env['GITHUB_TOKEN']}", "Accept": "application/vnd.github+json"}
        me = _whoami(root, headers, env.get("GITML_COMMENT_AUTHOR") or ACTIONS_BOT)
        author, edit = "user", "PATCH"
        url_of = lambda c: f"{root}/repos/{env['GITHUB_REPOSITORY']}/issues/comments/{c['id']}"  # noqa: E731
    elif env.get("GITLAB_TOKEN") and env.get("GITLAB_CI") and number:
        root = env["CI_API_V4_URL"].rstrip("/")
        api = f"{root}/projects/{env['CI_PROJECT_ID']}/merge_requests/{number}/notes"
        headers = {"PRIVATE-TOKEN": env["GITLAB_TOKEN"]}
        me = _whoami(root, headers, None)
        author, edit = "author", "PUT"
        url_of = lambda c: f"{api}/{c['id']}"  # noqa: E731
    else:
        print("gitml: no token or no pull/merge request: the report is not posted", file=sys.stderr)
        return 0
    listing = _listing(api + "?per_page=100", headers, root) if me is not None else []
    mine = [
        c
        for c in listing
        if str(c.get("body", "")).startswith(MARK) and _by(c, author, me) and isinstance(c.get("id"), int)
    ]
    if mine:
        _call(edit, url_of(mine[-1]), headers, {"body": body})
        print("gitml: report comment updated", file=sys.stderr)
    else:
        _call("POST", api, headers, {"body": body})
        print("gitml: report posted as a comment", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
