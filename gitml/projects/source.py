"""Where a project's code comes from: a local folder, or a git URL at a version.

A git URL (a path with ``--version``, ``file://``, ``ssh://``, ``user@host:path``,
``https://``; ``#subdir`` for a project inside the repository) is fetched with dulwich
into a bare cache repository, one per URL, under :func:`cache_dir` (``projects/``), and
the commit's tree is written into a fresh folder for the run. A full commit id already
in the cache is used without asking the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlparse

from dulwich.objects import Commit, ObjectID

from gitml.errors import InvalidInputError, ProjectFetchError, VersionNotFoundError
from gitml.store.ids import oids
from gitml.store.urls import redact_url

_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_SCP_LIKE = re.compile(r"^[^/:]+@[^/:]+:")  # user@host:path, as git reads it
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


@dataclass
class ProjectSource:
    """A project ready to run: its folder, and what the run records of its code.

    ``repository``: the git folder holding ``commit`` (None: the folder is in no git
    repository); ``url``: the repository's URL for ``mlflow.source.git.repoURL``
    (None for a local folder); both without credentials (``redact_url``); ``checkout``: a
    folder made for this run (removed after).
    """

    uri: str
    path: str
    repository: str | None
    commit: str | None
    dirty: bool = False
    url: str | None = None
    version: str | None = None
    checkout: str | None = None

    def cleanup(self) -> None:
        if self.checkout is not None:
            shutil.rmtree(self.checkout, ignore_errors=True)
            self.checkout = None


def cache_dir() -> str:
    """gitml's cache folder: ``$GITML_CACHE_DIR``, else ``$XDG_CACHE_HOME/gitml``, else ``~/.cache/gitml``."""
    explicit = os.environ.get("GITML_CACHE_DIR")
    if explicit:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gitml")


def split_uri(uri: str) -> tuple[str, str]:
    """``(location, subdir)`` of ``URI#subdir``; the subdir is checked to stay inside."""
    if not isinstance(uri, str) or not uri or not uri.isprintable():
        raise InvalidInputError(f"project URI {uri!r} is not a path or URL")
    location, _, subdir = uri.partition("#")
    subdir = subdir.strip("/")
    parts = subdir.split("/") if subdir else []
    if any(p in ("", ".", "..", ".git") or "\\" in p for p in parts):
        raise InvalidInputError(f"project URI {uri!r}: subdirectory {subdir!r} must be a plain relative path")
    return location, subdir


def is_git_url(location: str) -> bool:
    return "://" in location or bool(_SCP_LIKE.match(location))


def resolve(uri: str, version: str | None = None, *, cache: str | None = None) -> ProjectSource:
    """The project at ``uri``: a local folder is used in place (unless ``version`` asks
    for a commit of its repository); a git URL is fetched at ``version`` (default: the
    remote's HEAD) and checked out into a new folder. Raises ProjectFetchError,
    VersionNotFoundError, InvalidInputError (a bad URI or subdirectory)."""
    location, subdir = split_uri(uri)
    if not is_git_url(location):
        folder = os.path.abspath(os.path.expanduser(location))
        if not os.path.isdir(folder):
            raise InvalidInputError(f"project {location!r} is neither a folder nor a git URL")
        bare = os.path.isfile(os.path.join(folder, "HEAD")) and os.path.isdir(os.path.join(folder, "objects"))
        if version is None and not bare:
            return _local(folder + (f"#{subdir}" if subdir else ""), os.path.join(folder, subdir) if subdir else folder)
        if bare:
            return _fetched(uri, folder, subdir, version, cache or cache_dir())
        location = _repository_root(folder) or folder
    return _fetched(uri, location, subdir, version, cache or cache_dir())


def _repository_root(folder: str) -> str | None:
    from dulwich.errors import NotGitRepository

    from gitml.store.git import discover_repo

    try:
        repo = discover_repo(folder)
    except NotGitRepository:
        return None
    with repo:
        return repo.path


def _local(uri: str, folder: str) -> ProjectSource:
    """A folder used in place: its repository's HEAD and whether the work tree differs."""
    if not os.path.isdir(folder):
        raise InvalidInputError(f"project {uri!r}: {folder} is not a folder")
    from dulwich.errors import NotGitRepository

    from gitml.store.git import GitStore, discover_repo
    from gitml.store.worktree import snapshot

    try:
        repo = discover_repo(folder)
    except NotGitRepository:
        return ProjectSource(uri, folder, None, None)
    with GitStore(repo) as store:
        source = snapshot(store)
        root = store.workdir or store.commondir
        commit = source.commit.decode() if source.commit else None
        return ProjectSource(uri, folder, root, commit, source.dirty)


def _fetched(uri: str, url: str, subdir: str, version: str | None, cache: str) -> ProjectSource:
    from dulwich.repo import Repo

    if url.startswith("-") or (urlparse(url).hostname or "").startswith("-"):
        raise InvalidInputError(f"project URL {redact_url(url)!r} is not a URL git accepts")
    folder = os.path.join(cache, "projects", hashlib.sha256(url.encode()).hexdigest()[:24] + ".git")
    if not os.path.isdir(folder):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(folder))
        Repo.init_bare(staging).close()
        try:
            os.rename(staging, folder)
        except OSError:  # another gitml made it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    with Repo(folder) as repo:
        commit = _commit_at(repo, url, version)
        tree = cast(Commit, repo[commit.encode()]).tree
        if subdir:
            _subtree(repo, tree, subdir, url)
        checkout = tempfile.mkdtemp(prefix="gitml-project-")
        try:
            write_tree(repo, tree, checkout)
        except BaseException:
            shutil.rmtree(checkout, ignore_errors=True)
            raise
    path = os.path.join(checkout, subdir) if subdir else checkout  # the whole tree, as MLflow clones it
    # what the run records of its source, pushed to every teammate: no credentials
    return ProjectSource(
        redact_url(uri), path, folder, commit, False, url=redact_url(url), version=version, checkout=checkout
    )


def _commit_at(repo, url: str, version: str | None) -> str:
    """Fetch what ``version`` names (all branches and tags for a commit id) and return
    the commit, peeling tags."""
    if version is not None and _FULL_SHA.fullmatch(version) and _commit(repo, version.encode()) is not None:
        return version  # already here: no network
    refs = _fetch(repo, url, version)
    candidates: list[bytes] = []
    if version is None:
        candidates = [b"HEAD"]
    elif not version.startswith("refs/"):
        candidates = [f"refs/heads/{version}".encode(), f"refs/tags/{version}".encode()]
    else:
        candidates = [version.encode()]
    for name in candidates:
        if name in refs:
            found = _commit(repo, refs[name])
            if found is not None:
                return found.decode()
    if version is not None and re.fullmatch(r"[0-9a-f]{4,40}", version):
        matches = sorted(
            {sha for sha in (_commit(repo, s) for s in refs.values()) if sha is not None} | _prefixed(repo, version)
        )
        matches = [m for m in matches if m.decode().startswith(version)]
        if len(matches) == 1:
            return matches[0].decode()
        if len(matches) > 1:
            raise InvalidInputError(
                f"version {version!r} of {redact_url(url)} is ambiguous: it names {len(matches)} commits"
            )
    if version is None:
        raise ProjectFetchError(redact_url(url), "the repository has no HEAD (an empty repository?); pass --version")
    raise VersionNotFoundError(redact_url(url), version)


def _prefixed(repo, prefix: str) -> set[bytes]:
    out = set()
    for sha in repo.object_store:
        if sha.decode().startswith(prefix) and _commit(repo, sha) == sha:
            out.add(sha)
    return out


def _commit(repo, sha: bytes) -> bytes | None:
    """The commit ``sha`` is or (through tags) points at; None if it is missing or another kind."""
    from gitml.store.entries import peel

    def read(sha: bytes) -> tuple[int, bytes] | None:
        try:
            return repo.object_store.get_raw(sha)
        except KeyError:
            return None

    found = peel(sha, read)
    return found[0] if found is not None and found[1] == Commit.type_num else None


def _fetch(repo, url: str, version: str | None) -> dict[bytes, bytes]:
    """Fetch into the cache repository; returns the remote's refs (HEAD included), and
    keeps the fetched branches and tags as the cache's refs, so the next fetch sends
    only what is new."""
    from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized, get_transport_and_path
    from dulwich.errors import GitProtocolError, HangupException, NotGitRepository

    advertised: dict[bytes, bytes] = {}

    def determine_wants(refs, depth=None) -> list[ObjectID]:
        advertised.update({k: v for k, v in refs.items() if v is not None and not k.endswith(b"^{}")})
        if version is None:
            names = [b"HEAD"]
        elif version.startswith("refs/"):
            names = [version.encode()]
        else:
            names = [f"refs/heads/{version}".encode(), f"refs/tags/{version}".encode()]
        wanted = [advertised[n] for n in names if n in advertised]
        if not wanted and version is not None and re.fullmatch(r"[0-9a-f]{4,40}", version):
            wanted = [v for k, v in advertised.items() if k.startswith((b"refs/heads/", b"refs/tags/"))]
        return oids(sorted({sha for sha in wanted if sha not in repo.object_store}))

    client = None
    try:
        client, path = get_transport_and_path(url)
        client.fetch(path, repo, determine_wants=determine_wants)
    except NotGitRepository:
        raise ProjectFetchError(redact_url(url), "no git repository there") from None
    except (HTTPUnauthorized, HTTPProxyUnauthorized):
        raise ProjectFetchError(redact_url(url), "authentication failed or required") from None
    except HangupException as e:
        raise ProjectFetchError(redact_url(url), _one_line(str(e)) or "the connection was closed") from None
    except (GitProtocolError, OSError, ValueError) as e:
        raise ProjectFetchError(redact_url(url), _cause(e)) from None
    finally:
        if client is not None:
            client.close()
    for name, sha in advertised.items():
        if name.startswith((b"refs/heads/", b"refs/tags/")) and sha in repo.object_store:
            repo.refs[name] = sha  # the cache's own refs: what this URL had
    return advertised


def _cause(e: BaseException) -> str:
    """A short reason: the OS error inside urllib3's wrapping, if there is one."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = _one_line(str(e))
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return found.group(1).strip() if found else text or type(e).__name__


def _one_line(text: str) -> str:
    text = _USERINFO.sub(r"\1", " ".join(str(text).split()))  # a URL in a library's message: no credentials
    return text if len(text) <= 300 else text[:297] + "..."


def _subtree(repo, tree: bytes, subdir: str, url: str) -> bytes:
    from dulwich.objects import Tree

    for part in subdir.split("/"):
        entries = {e.path: e for e in repo[tree].iteritems()}
        entry = entries.get(part.encode())
        if entry is None or not stat.S_ISDIR(entry.mode) or not isinstance(repo[entry.sha], Tree):
            raise InvalidInputError(f"project {redact_url(url)} has no folder {subdir!r}")
        tree = entry.sha
    return tree


def write_tree(repo, tree: bytes, root: str) -> None:
    """Write the files of ``tree`` under ``root``: regular files first, symbolic links
    last (so no file is written through a link), refusing names git's checkout refuses
    (``..``, ``.git``, a ``/`` or NUL). Submodules are left as empty folders."""
    links: list[tuple[str, bytes]] = []
    todo = [(tree, root)]
    while todo:
        sha, folder = todo.pop()
        os.makedirs(folder, exist_ok=True)
        for entry in repo[sha].iteritems():
            name = entry.path.decode("utf-8", "surrogateescape")
            if name in ("", ".", "..") or name.lower() == ".git" or "/" in name or "\0" in name or "\\" in name:
                raise InvalidInputError(f"the project holds a file named {name!r}, which gitml does not check out")
            path = os.path.join(folder, name)
            if stat.S_ISDIR(entry.mode):
                todo.append((entry.sha, path))
            elif stat.S_ISLNK(entry.mode):
                links.append((path, repo[entry.sha].data))
            elif stat.S_ISREG(entry.mode):
                with open(path, "xb") as f:
                    f.write(repo[entry.sha].data)
                if entry.mode & 0o100:
                    os.chmod(path, 0o755)
            else:  # a submodule (gitlink): git leaves an empty folder until it is initialised
                os.makedirs(path, exist_ok=True)
    for path, target in links:
        os.symlink(target, path)
