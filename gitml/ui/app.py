"""The ``gitml ui`` web application (Starlette): read-only pages and JSON over a Client.

>>> app = make_app(Operations("path/to/repo"), allowed_hosts=["127.0.0.1", "localhost"])

Every route is GET. Pages are rendered by Jinja2 with autoescaping (a run named
``<script>`` is text) under a Content-Security-Policy allowing only the package's own
scripts; artifacts are served as downloads, except a few image types, with
``nosniff`` and a sandboxing CSP. A request whose Host header is not allowed is
refused (DNS rebinding: a page of another site resolving its name to 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gitml.errors import ConflictError, FilterSyntaxError, GitmlError, InvalidInputError, NotFoundError, TimeBudgetError
from gitml.runlog.entities import ViewType
from gitml.ui import pages, previews, registry, series, tables
from gitml.ui.reader import Reader

if TYPE_CHECKING:
    from gitml.ops import Operations

log = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
MAX_WIDTH = 4000  # pixel columns a chart may ask for
MAX_SERIES_RUNS = 50  # runs drawn on one chart
MAX_GROUP_RUNS = 500  # runs averaged into the groups of one chart


class HostAllowList:
    """ASGI middleware: refuse a Host header not in the list; every response gets
    ``nosniff``, no framing, no referrer, and the page CSP unless it set its own."""

    def __init__(self, app, allowed_hosts: list[str]):
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
        if host not in self.allowed:
            response = PlainTextResponse(f"gitml ui: host {host!r} is not allowed (see gitml ui --allow-host)", 400)
            return await response(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"no-referrer",
                    b"content-security-policy": PAGE_CSP.encode(),
                }
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(header: str) -> str:
    """The host of a Host header, without its port: ``[::1]:5000`` → ``[::1]``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _ClosingStream(StreamingResponse):
    """A streamed artifact whose file is closed however the response ends: a client cut off
    mid-stream cancels the stream, and its generator, with the file open, waited for the
    garbage collector (20 slow readers cut off held 20 files for good)."""

    def __init__(self, content, stream, **kwargs):
        super().__init__(content, **kwargs)
        self._stream = stream

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await run_in_threadpool(self._stream.close)  # a read in a thread may hold the file's lock


def make_app(client: Operations, *, allowed_hosts: list[str]) -> Any:
    """The ASGI application serving ``client``'s repository read-only."""
    import pandas  # noqa: F401  (histories are parsed with it: imported now, not in the first chart's request)

    reader = Reader(client)
    render = pages.Renderer()

    async def page(request: Request, name: str, fn, *args) -> Response:
        context = await reader.call(fn, *args)
        return HTMLResponse(render(name, request=request, **context))

    async def experiments_page(request: Request) -> Response:
        search = await run_in_threadpool(reader.search, None)
        return await page(request, "experiments.html", pages.experiments, reader, search)

    async def runs_page(request: Request) -> Response:
        return await page(request, "runs.html", pages.runs, client, request.query_params.get("experiment", ""))

    async def run_page(request: Request) -> Response:
        return await page(request, "run.html", pages.run, reader, request.path_params["run_id"])

    async def artifact_page(request: Request) -> Response:
        run_id, path = request.path_params["run_id"], request.path_params["path"]
        return await page(request, "artifact.html", pages.artifact, client, run_id, path)

    async def compare_page(request: Request) -> Response:
        ids = _run_list(request.query_params.get("runs", ""))
        return await page(request, "compare.html", pages.compare, client, ids)

    async def chart_page(request: Request) -> Response:
        q = request.query_params
        keys = None
        if q.get("group"):
            experiment = q.get("experiment") or None
            search = await run_in_threadpool(reader.search, [experiment] if experiment else None, q.get("filter", ""))
            keys = search.keys["metrics"]
        return await page(request, "chart.html", pages.chart, reader, dict(q), keys)

    async def raw(request: Request) -> Response:
        run_id, path = request.path_params["run_id"], request.path_params["path"]
        stream = await reader.call(client.open_artifact, run_id, path)
        media_type, headers = previews.raw_headers(path, download=request.query_params.get("download") == "1")

        def chunks():  # 64 KiB at a time: a client reading nothing holds a block of the server's memory
            with stream:
                while block := stream.read(1 << 16):
                    yield block

        return _ClosingStream(chunks(), stream, media_type=media_type, headers=headers)

    async def models_page(request: Request) -> Response:
        return await page(request, "models.html", registry.models, client)

    async def model_page(request: Request) -> Response:
        return await page(request, "model.html", registry.model, client, request.path_params["name"])

    async def api_experiments(request: Request) -> Response:
        search = await run_in_threadpool(reader.search, None)
        return JSONResponse(await reader.call(pages.experiment_list, reader, search))

    async def api_runs(request: Request) -> Response:
        q = request.query_params
        columns = tables.parse_columns(q.get("columns", ""))
        order = [tables.order_clause(q["sort"], q.get("desc", "1") == "1")] if q.get("sort") else None
        experiment = q.get("experiment") or None
        view = ViewType.DELETED_ONLY if q.get("deleted") == "1" else ViewType.ACTIVE_ONLY

        def work():  # a search and its page: no lock but the searches'
            search = reader.search([experiment] if experiment else None, q.get("filter", ""), view=view, order_by=order)
            chosen = tables.default_columns(search.keys) if q.get("defaults") == "1" else columns
            body = tables.page_of(search, chosen, offset=_int(q, "offset", 0), limit=_int(q, "limit", 50))
            if q.get("keys") == "1":
                body["keys"] = search.keys
            return body

        return JSONResponse(await run_in_threadpool(work))

    async def api_run(request: Request) -> Response:
        return JSONResponse(await reader.call(pages.run_summary, client, request.path_params["run_id"]))

    async def api_series(request: Request) -> Response:
        q = request.query_params
        ids = _run_list(q.get("runs", ""))[:MAX_SERIES_RUNS]
        if not ids:
            raise InvalidInputError("runs: give one or more run ids")
        options = _series_options(q)
        return JSONResponse(await reader.call(chart_series, reader, ids, q.get("key", ""), **options))

    async def api_groups(request: Request) -> Response:
        q = request.query_params
        options = _series_options(q)
        experiment = q.get("experiment") or None
        if not q.get("group", ""):
            raise InvalidInputError("group: name the param to group runs by")
        search = await run_in_threadpool(reader.search, [experiment] if experiment else None, q.get("filter", ""))
        return JSONResponse(
            await reader.call(chart_groups, reader, search, q.get("key", ""), q.get("group", ""), **options)
        )

    async def api_compare(request: Request) -> Response:
        ids = _run_list(request.query_params.get("runs", ""))
        return JSONResponse(await reader.call(pages.compare_data, client, ids))

    async def gitml_error(request: Request, exc: Exception) -> Response:
        status = (
            404
            if isinstance(exc, NotFoundError)
            else 400
            if isinstance(exc, InvalidInputError)
            else 409
            if isinstance(exc, ConflictError)
            else 503
            if isinstance(exc, TimeBudgetError)
            else 500
        )
        if request.url.path.startswith("/api/"):
            body: dict = {"error": str(exc)}
            if isinstance(exc, FilterSyntaxError):
                body.update(position=exc.position, text=exc.text)
            return JSONResponse(body, status)
        return HTMLResponse(render("error.html", request=request, status=status, message=str(exc)), status)

    get = ["GET"]
    routes = [
        Route("/", experiments_page, methods=get),
        Route("/runs", runs_page, methods=get),
        Route("/run/{run_id}", run_page, methods=get),
        Route(
            "/runs/{run_id}",
            lambda request: RedirectResponse(  # the plural, as MLflow's run links read
                request.url_for("run_page", run_id=request.path_params["run_id"]).path, 308
            ),
            methods=get,
        ),
        Route("/run/{run_id}/artifact/{path:path}", artifact_page, methods=get),
        Route("/run/{run_id}/raw/{path:path}", raw, methods=get),
        Route("/compare", compare_page, methods=get),
        Route("/chart", chart_page, methods=get),
        Route("/api/experiments", api_experiments, methods=get),
        Route("/api/runs", api_runs, methods=get),
        Route("/api/run/{run_id}", api_run, methods=get),
        Route("/api/series", api_series, methods=get),
        Route("/api/groups", api_groups, methods=get),
        Route("/api/compare", api_compare, methods=get),
        Route("/models", models_page, methods=get),
        Route("/models/{name:path}", model_page, methods=get),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=_warm, args=(reader,), name="gitml-ui-warm", daemon=True).start()
        try:
            yield
        finally:
            reader.close()

    app = Starlette(routes=routes, exception_handlers={GitmlError: gitml_error}, lifespan=lifespan)
    return HostAllowList(app, allowed_hosts)


def _warm(reader: Reader) -> None:
    try:
        reader.warm()
    except GitmlError as e:  # the first request will say it
        log.warning("gitml ui: %s", e)


def _run_list(text: str) -> list[str]:
    return [part for part in (p.strip() for p in text.split(",")) if part]


def _int(q, name: str, default: int) -> int:
    try:
        return int(q.get(name, default))
    except ValueError:
        raise InvalidInputError(f"{name} must be an integer, not {q.get(name)!r}") from None


def _float(q, name: str) -> float | None:
    value = q.get(name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidInputError(f"{name} must be a finite number, not {value!r}")
    return number


def _series_options(q) -> dict:
    axis = q.get("x", "step")
    if axis not in series.X_AXES:
        raise InvalidInputError(f"x must be one of {', '.join(series.X_AXES)}, not {axis!r}")
    width = _int(q, "width", 800)
    if not 1 <= width <= MAX_WIDTH:
        raise InvalidInputError(f"width must be 1..{MAX_WIDTH}, not {width}")
    smooth = _float(q, "smooth") or 0.0
    if not 0 <= smooth < 1:
        raise InvalidInputError(f"smooth must be in [0, 1), not {smooth}")
    return {"axis": axis, "lo": _float(q, "lo"), "hi": _float(q, "hi"), "width": width, "smooth": smooth}


def _floats(values) -> list:
    """Numbers for JSON: NaN as null (a gap), infinities as strings."""
    out: list[float | str | None] = []
    for v in values.tolist():
        if v != v:
            out.append(None)
        elif v in (float("inf"), float("-inf")):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(v)
    return out


def chart_series(reader: Reader, run_ids: list[str], key: str, *, axis: str, lo, hi, width: int, smooth: float) -> dict:
    """Each run's history of ``key`` downsampled by M4 to ``width`` columns of ``[lo, hi]``."""
    out = []
    for run_id in run_ids:
        run_id = reader.client.resolve_run(run_id)
        run = reader.client.get_run(run_id)
        steps, stamps, values = reader.history(run_id, key)
        x, y = series.ordered(series.x_values(axis, steps, stamps), values)
        pick = series.m4_indices(x, y, lo, hi, width)
        item = {
            "run_id": run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "points": len(x),
            "x": _floats(x[pick]),
            "y": _floats(y[pick]),
        }
        if smooth:
            item["smooth"] = _floats(series.ema(y, smooth)[pick])
        out.append(item)
    return {"key": key, "x": axis, "series": out}


def chart_groups(
    reader: Reader, search: tables.Search, key: str, group: str, *, axis: str, lo, hi, width: int, smooth: float
) -> dict:
    """The runs of ``search`` (made first, under the searches' lock only) grouped by the
    param ``group``: per group the mean of the runs' curves and the min–max band around
    it, on ``width`` columns."""
    if not group:
        raise InvalidInputError("group: name the param to group runs by")
    has_key, by = search.column(f"metrics.{key}"), search.column(f"params.{group}")
    rows = [i for i, value in enumerate(has_key) if value is not None][:MAX_GROUP_RUNS]
    curves: dict[str, list] = {}
    for i in rows:
        steps, stamps, values = reader.history(search.values["attributes.run_id"][i], key)
        x, y = series.ordered(series.x_values(axis, steps, stamps), series.ema(values, smooth) if smooth else values)
        curves.setdefault(by[i] if by[i] is not None else "(none)", []).append((x, y))
    if not curves:
        return {"key": key, "x": axis, "group": group, "grid": [], "groups": []}
    xs = [x for runs in curves.values() for x, _ in runs if len(x)]
    start = lo if lo is not None else min(float(x[0]) for x in xs) if xs else 0.0
    stop = hi if hi is not None else max(float(x[-1]) for x in xs) if xs else 1.0
    span = (stop - start) or 1.0
    grid = [start + (i + 0.5) * span / width for i in range(width)]
    groups = []
    for value in sorted(curves):
        mean, low, high = series.band([series.column_means(x, y, start, stop, width) for x, y in curves[value]])
        groups.append(
            {
                "value": value,
                "runs": len(curves[value]),
                "mean": _floats(mean),
                "min": _floats(low),
                "max": _floats(high),
            }
        )
    return {"key": key, "x": axis, "group": group, "grid": grid, "groups": groups, "runs": len(rows)}
