"""``gitml serve``: MLflow's scoring protocol and the V2 (Open Inference) protocol for one model, over several worker
processes (an optional extra: ``pip install "gitml[serve]"``, which brings uvicorn with
httptools and uvloop, and orjson).

>>> from gitml.serving import serve
>>> serve("runs:/churn-baseline/model", host="127.0.0.1", port=5001, workers=2)

Modules: ``app`` (the ASGI app: routes, body limit, errors), ``v2`` (the V2 protocol's
routes and tensors), ``fastpath`` (numeric
``dataframe_split`` bodies straight to one array), ``workers`` (the socket, the forked
workers, the limits on the request head).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from gitml.errors import InvalidInputError, MissingExtraError

DEFAULT_MAX_BODY_MB = 50.0
HEAD_TIMEOUT = 10.0  # seconds (gitml.serving.workers.Limits)
MAX_CONNECTIONS = 1000  # per worker


def check_installed() -> None:
    """Raise MissingExtraError with the install hint when the ``serve`` extra is missing."""
    MissingExtraError.unless_installed("serve", ("uvicorn", "httptools", "orjson"))


def make_app(
    model_uri: str | os.PathLike,
    *,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    allowed_hosts: list[str] | tuple[str, ...] = (),
    body_timeout: float = HEAD_TIMEOUT,
    name: str | None = None,
):
    """The ASGI app scoring the model at ``model_uri`` (loaded and, from a run, verified now),
    answering Host headers that are IP addresses, ``localhost`` or in ``allowed_hosts``;
    ``name`` is the model's name in the V2 routes (default: the registered name, else the
    folder's)."""
    from gitml import __version__
    from gitml.pyfunc import load_model
    from gitml.serving.app import ScoringApp

    if not max_body_mb > 0:
        raise InvalidInputError(f"the body limit must be over 0 MB, not {max_body_mb}")
    from gitml.serving.v2 import model_name_of

    model = load_model(model_uri)
    default_name, model_version = model_name_of(os.fspath(model_uri))
    return ScoringApp(
        model,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        version=__version__,
        allowed_hosts=allowed_hosts,
        body_timeout=body_timeout,
        name=name or default_name,
        model_version=model_version,
    )


def serve(
    model_uri: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 5001,
    workers: int = 1,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    allowed_hosts: list[str] | tuple[str, ...] = (),
    head_timeout: float = HEAD_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    ready: Callable[[str], None] | None = None,
    name: str | None = None,
) -> None:
    """Serve the model at ``model_uri`` until SIGINT or SIGTERM.

    The model is loaded (a run's model checked file by file against the run's manifest)
    before the socket listens, then ``workers`` processes are forked from this one.
    A request's Host header must be an IP address, ``localhost``, the ``host`` listened
    on or one of ``allowed_hosts`` (``"*"``: any); its line and headers must arrive within
    ``head_timeout`` seconds, and no pause in its body last as long; a worker holds at
    most ``max_connections`` connections.
    ``name``: the model's name in the V2 routes (``/v2/models/<name>/infer``).
    ``ready(url)`` is called once listening. Raises NotFoundError, IntegrityError,
    ServerStartError (the address is taken), MissingExtraError.
    """
    from gitml.serving.workers import Limits, listen, run_workers

    check_installed()
    if workers < 1:
        raise InvalidInputError(f"workers must be at least 1, not {workers}")
    if not head_timeout > 0 or max_connections < 1:
        raise InvalidInputError("the head timeout must be over 0 s and the connections at least 1")
    app = make_app(
        model_uri, max_body_mb=max_body_mb, allowed_hosts=(host, *allowed_hosts), body_timeout=head_timeout, name=name
    )
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    if ready is not None:
        ready(f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}")
    run_workers(app, sock, workers, Limits(head_timeout=head_timeout, max_connections=max_connections))


__all__ = [
    "DEFAULT_MAX_BODY_MB",
    "HEAD_TIMEOUT",
    "MAX_CONNECTIONS",
    "MissingExtraError",
    "check_installed",
    "make_app",
    "serve",
]
