"""URLs as gitml records and shows them: without credentials.

A git URL may carry a secret: ``https://user:token@host/repo`` (or a token as the user
name alone, which GitHub and GitLab accept), or a token in the query
(``?private_token=...``, a cloud store's signature). What a run records of its source
(``mlflow.source.git.repoURL``, the source name) is pushed to every teammate, so it is
written through :func:`redact_url`.

>>> redact_url("https://ci:glpat-abc@gitlab.example/team/churn.git?ref=x&private_token=t")
'https://gitlab.example/team/churn.git?ref=x'
>>> redact_url("ssh://git:pw@github.com/team/churn")
'ssh://git@github.com/team/churn'
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# user names that are account names, not secrets, where the URL needs them (ssh's login)
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")
# query parameters that carry a credential (GitLab's private_token, OAuth's access_token,
# S3's X-Amz-Signature, Azure's sig, Google's X-Goog-Credential, ...)
_SECRET_PARAM = re.compile(r"token|secret|passw|pwd|key|sig|auth|cred|session|^x-amz-|^x-goog-", re.I)
_SCP_LIKE = re.compile(r"^(?P<user>[^/:@]+)(?::[^/@]*)?@(?P<rest>[^/:]+:.*)$")  # user[:pass]@host:path


def redact_url(url: str) -> str:
    """``url`` without the credentials in it: the userinfo of a URL (for ssh, the password
    only: the user name is the account logged in to) and token-like query parameters. A
    local path comes back as it is."""
    if "://" not in url:
        scp = _SCP_LIKE.match(url)
        return f"{scp['user']}@{scp['rest']}" if scp else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://(a URL gitml cannot read)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{host}" if parts.scheme.lower() in _SSH_SCHEMES and user else host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _SECRET_PARAM.search(k)]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


__all__ = ["redact_url"]
