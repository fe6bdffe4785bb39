"""Objects a partial clone left on its promisor remote, fetched when read.

``git clone --filter=blob:none`` (how CI makes quick clones) takes commits and trees but no
blobs; git fetches a missing blob on demand from the remote the clone came from (its
*promisor*: ``remote.<name>.promisor = true``, ``extensions.partialClone = <name>``). dulwich
does not, so a run's record or a model file reached through a registry tag (which the clone
took whole, blobs aside) would read as missing. :func:`fetch_missing` asks the promisor for
exactly those objects with protocol v2, whose ``want`` takes any object id (as git's lazy
fetch does), and stores the pack received. It is tried once per object and process: a
remote that cannot give it leaves the object missing, reported as before.
"""

from __future__ import annotations

import threading

from dulwich.repo import Repo

from gitml.store.ids import oids

_tried: set[bytes] = set()
_tried_lock = threading.Lock()


def promisor_url(repo: Repo) -> str | None:
    """The URL of the partial clone's promisor remote, None for a full clone."""
    config = repo.get_config()
    names = []
    try:
        names.append(config.get((b"extensions",), b"partialclone"))
    except KeyError:
        pass
    for section in config.sections():
        if len(section) == 2 and section[0] == b"remote" and config.get_boolean(section, b"promisor", False):
            names.append(section[1])
    for name in names:
        try:
            return config.get((b"remote", name), b"url").decode()
        except KeyError:
            continue
    return None


def fetch_missing(repo: Repo, shas: list[bytes]) -> bool:
    """Fetch ``shas`` from the promisor remote into ``repo``; whether anything was asked
    (False: a full clone, or every one was asked for before)."""
    url = promisor_url(repo)
    if url is None:
        return False
    with _tried_lock:
        wanted = [sha for sha in shas if sha not in _tried]
        _tried.update(wanted)
    if not wanted:
        return False
    from dulwich.client import get_transport_and_path

    try:
        client, path = get_transport_and_path(url, config=repo.get_config_stack())
        try:
            client.fetch(path, repo, determine_wants=lambda refs, depth=None: oids(wanted), protocol_version=2)
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any transport or protocol failure: the object stays missing, named by the caller
        return False
    return True
