"""Objects a partial clone left on its promisor remote, fetched when read.

``git clone --filter=blob:none`` (how CI makes quick clones) takes commits and trees but no
blobs; git fetches a missing blob on demand from the remote the clone came from (its
*promisor*: ``remote.<name>.promisor = true``, ``extensions.partialClone = <name>``). dulwich
does not, so a run's record or a model file reached through a registry tag (which the clone
took whole, blobs aside) would read as missing. :func:`fetch_missing` asks the promisor for
exactly those objects with protocol v2, whose ``want`` takes any object id (as git's lazy
fetch does, telling it nothing of what this clone has), and stores the pack received. It is
tried once per object and process: a remote that cannot give it leaves the object missing,
reported with the reason.

The fetch happens inside a read, so a hostile or broken remote must not hold the read (and
the store's lock) nor fill the disk: the pack received is cut off past
``GITML_PROMISOR_MAX_MB`` (default 1024) and the fetch given up after
``GITML_PROMISOR_TIMEOUT`` seconds (default 300), however the remote sends (nothing, a
trickle, an endless stream); the pack is indexed by gitml's own reader (every object hashed,
inflated no further than its header says) before anything of it is used.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading

from dulwich.repo import Repo

from gitml.errors import InvalidInputError, RemoteError
from gitml.store.ids import oids

MAX_MB, TIMEOUT = 1024, 300.0  # defaults of GITML_PROMISOR_MAX_MB, GITML_PROMISOR_TIMEOUT

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


def _setting(name: str, default: float) -> float:
    """The positive number an environment variable sets, or ``default`` when it is unset; any other
    value (a word, zero, a negative, inf or nan) is refused in one line naming the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name} must be a positive number, not {text!r}")
    return value


class _State:
    """How the fetch thread is doing, shared with the reader (under its lock)."""

    def __init__(self) -> None:
        self.finished = self.given_up = False
        self.error: BaseException | None = None
        self.size = 0


class _Stop(Exception):
    """Raised in the fetch's writer to end it: over the size limit, or given up."""


def fetch_missing(repo: Repo, shas: list[bytes]) -> bool:
    """Fetch ``shas`` from the promisor remote into ``repo``; whether anything was asked
    (False: a full clone, or every one was asked for before). Raises RemoteError naming
    the remote and why when it sends too much, too slowly, or a pack that does not read."""
    url = promisor_url(repo)
    if url is None:
        return False
    limit = int(_setting("GITML_PROMISOR_MAX_MB", MAX_MB) * (1 << 20))  # a bad setting is refused before any ask
    timeout = _setting("GITML_PROMISOR_TIMEOUT", TIMEOUT)
    with _tried_lock:
        wanted = [sha for sha in shas if sha not in _tried]
        _tried.update(wanted)
    if not wanted:
        return False
    pack_dir = os.path.join(repo.object_store.path, "pack")
    fd, received = tempfile.mkstemp(prefix="tmp_gitml_promised_", dir=pack_dir)
    state = _State()
    lock, done = threading.Lock(), threading.Event()

    def write(data: bytes) -> int:
        if state.given_up:
            raise _Stop()
        state.size += len(data)
        if state.size > limit:
            raise _Stop()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return len(data)

    def work() -> None:  # in a thread of its own: a remote that stalls holds it, not the reader
        from dulwich.client import get_transport_and_path
        from dulwich.object_store import ObjectStoreGraphWalker

        try:
            client, path = get_transport_and_path(url, config=repo.get_config_stack())
            try:
                walker = ObjectStoreGraphWalker([], lambda sha: [])  # no haves: the objects themselves
                client.fetch_pack(path, lambda refs, depth=None: oids(wanted), walker, write, protocol_version=2)
            finally:
                client.close()
        except BaseException as e:  # noqa: BLE001 - reported by the reader, below
            state.error = e
        finally:
            os.close(fd)
            with lock:
                state.finished = True
                if state.given_up:
                    os.unlink(received)
            done.set()

    threading.Thread(target=work, name="gitml-promisor-fetch", daemon=True).start()
    done.wait(timeout)
    with lock:
        if not state.finished:
            state.given_up = True
            raise RemoteError(
                url,
                f"the partial clone's remote did not send the missing object(s) within {timeout:g} s "
                "(GITML_PROMISOR_TIMEOUT)",
            )
    try:
        if state.size > limit:
            raise RemoteError(
                url,
                f"the partial clone's remote sent more than {limit >> 20} MiB for the missing object(s); "
                "stopped (GITML_PROMISOR_MAX_MB)",
            )
        if state.error is not None:
            raise RemoteError(
                url, f"the partial clone's remote could not give the missing object(s) ({_one_line(state.error)})"
            )
        from gitml.errors import PackError
        from gitml.store.unpack import store_received

        try:
            store_received(pack_dir, received, lambda sha: None)
        except PackError as e:
            raise RemoteError(url, f"the partial clone's remote sent a bad pack ({e})") from None
    finally:
        os.unlink(received)
    return True


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:197] + "..."
