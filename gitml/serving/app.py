"""The scoring protocol as a plain ASGI app (no framework): MLflow's routes and forms.

    GET  /ping, /health     200 "\\n" once the model is loaded (it is, before the socket listens)
    GET  /version           gitml's version
    POST /invocations       application/json (dataframe_split, dataframe_records, instances,
                            inputs; optional params) or text/csv -> {"predictions": ...}
    /v2/...                 the V2 (Open Inference) protocol: health, metadata, infer
                            (:mod:`gitml.serving.v2`; its refusals are ``{"error": ...}``)

A request whose Host header names another host (DNS rebinding) is refused (400), and
so is a POST without one of the three content types (415: a cross-site form or a
``text/plain`` fetch cannot post to it). A body's table is refused (413) when it would
decode to more cells than the body limit allows (``max_cells``), before it is built.

Every refusal is a 4xx with ``{"error_code": ..., "message": ...}``; a message names what
was wrong and never carries the body (parser messages are cut to their first 200
characters). A failure inside the model is a 400 naming the exception's class; a bug of
gitml's is a 500 whose body says only that. The traceback goes to the log, not the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from gitml.errors import GitmlError, InputTooLargeError, RequestError

log = logging.getLogger("gitml.serving")

JSON = b"application/json"
OFFLOAD_BYTES = 256 * 1024  # larger bodies are scored on a thread: /ping keeps answering
_MESSAGE_MAX = 500


def max_cells(max_body_bytes: int) -> int:
    """The cells (rows × columns) a body's table may decode to: one per two bytes of the
    body limit, the densest JSON (``0,``) there is. A CSV of empty fields or a Parquet file
    of repeated values holds many more per byte; they are refused before they are built."""
    return max(max_body_bytes // 2, 1)


def _loads(body: bytes) -> Any:
    """orjson for speed; what it refuses (NaN, Infinity, integers past 64 bits, lone
    surrogates) is read by ``json`` as MLflow's server reads it."""
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def host_name(header: bytes) -> str:
    """The host of a Host header, lower case, without its port: ``[::1]:5001`` → ``::1``."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class HostAllowList:
    """Which Host headers the server answers: any IP address (a page whose address is an
    IP literal is the server's own origin), ``localhost``, and the names given; ``*``
    allows any. A DNS-rebinding page (``evil.example`` made to resolve to the server)
    sends its own name, which is none of these."""

    def __init__(self, names: list[str] | tuple[str, ...] = ()):
        self.names = {n.strip().lower().strip("[]") for n in names} | {"localhost"}
        self.any = "*" in self.names
        self._seen: dict[bytes, bool] = {}

    def allows(self, header: bytes | None) -> bool:
        if header is None:
            return self.any
        known = self._seen.get(header)
        if known is None:
            known = self.any or self._judge(host_name(header))
            if len(self._seen) < 256:  # the few names clients use, not every name an attacker sends
                self._seen[header] = known
        return known

    def _judge(self, name: str) -> bool:
        import ipaddress

        if name in self.names:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


def _content_kind(content_type: str) -> str:
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset":
            raise RequestError(415, "BAD_REQUEST", f"unsupported content type parameter {key.strip()[:40]!r}")
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(415, "BAD_REQUEST", "the scoring server reads UTF-8 only")
    kind = {"application/json": "json", "text/csv": "csv", "application/vnd.apache.parquet": "parquet"}.get(
        mime.lower()
    )
    if kind is None:
        raise RequestError(
            415, "BAD_REQUEST", "the content type must be application/json, text/csv or application/vnd.apache.parquet"
        )
    return kind


class ScoringApp:
    """The ASGI app serving one loaded model (a PyFuncModel)."""

    def __init__(
        self,
        model,
        *,
        max_body_bytes: int,
        version: str,
        allowed_hosts: list[str] | tuple[str, ...] = (),
        body_timeout: float = 10.0,
        name: str = "model",
        model_version: str | None = None,
    ):
        from gitml.serving.fastpath import SplitFastPath
        from gitml.serving.v2 import V2Model

        self.model = model
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.max_cells = max_cells(max_body_bytes)
        self.hosts = HostAllowList(allowed_hosts)
        self.schema = model.metadata.get_input_schema()
        self.fast = SplitFastPath.for_model(model)
        if self.fast is not None and self.fast.as_array:
            import warnings

            # the array route gives scikit-learn the array of the columns it was fitted on
            # (checked once, in SplitFastPath): its per-request note on missing names is noise
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        self._version = version.encode()
        self.v2 = V2Model(model, name=name, version=model_version, max_cells=self.max_cells)
        self._v2_server = json.dumps(self.v2.server_metadata(version)).encode()
        self._v2_model = json.dumps(self.v2.metadata()).encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan is turned off; websockets are refused
            return
        path, method = scope["path"], scope["method"]
        try:
            if not self.hosts.allows(_header(scope, b"host")):
                raise RequestError(
                    400,
                    "BAD_REQUEST",
                    "the Host header names a host this server does not answer to (gitml serve --allow-host NAME)",
                )
            if path in ("/ping", "/health"):
                if method not in ("GET", "HEAD"):
                    raise RequestError(405, "BAD_REQUEST", f"{path} takes GET")
                return await _respond(send, 200, b"\n", JSON)
            if path == "/version":
                if method not in ("GET", "HEAD"):
                    raise RequestError(405, "BAD_REQUEST", "/version takes GET")
                return await _respond(send, 200, self._version, b"text/plain; charset=utf-8")
            if path == "/v2" or path.startswith("/v2/"):
                return await self._v2(scope, receive, send, path, method)
            if path != "/invocations":
                raise RequestError(
                    404,
                    "ENDPOINT_NOT_FOUND",
                    "no such endpoint: the server answers /ping, /health, /version, /invocations and /v2/...",
                )
            if method != "POST":
                raise RequestError(405, "BAD_REQUEST", "/invocations takes POST")
            content_type = _header(scope, b"content-type")
            if content_type is None:
                raise RequestError(
                    415,
                    "BAD_REQUEST",
                    "the request has no Content-Type: send application/json, "
                    "text/csv or application/vnd.apache.parquet",
                )
            kind = _content_kind(content_type.decode("latin-1"))
            body = await self._body(scope, receive)
            if len(body) > OFFLOAD_BYTES:
                text = await asyncio.get_running_loop().run_in_executor(None, self.score, body, kind)
            else:
                text = self.score(body, kind)
            return await _respond(send, 200, text, JSON)
        except RequestError as e:
            return await _refuse(send, e.status, e.code, str(e), close=e.status in (408, 413))
        except _Disconnected:
            return None
        except Exception:
            log.exception("unexpected error on %s %s", method, path[:100])
            return await _refuse(send, 500, "INTERNAL_ERROR", "unexpected error in the scoring server (see its log)")

    async def _v2(self, scope, receive, send, path: str, method: str) -> None:
        """A V2 request; a refusal is ``{"error": message}`` with its 4xx, as the protocol has it."""
        try:
            action = self.v2.route(path, method)
            if action in ("live", "ready"):
                return await _respond(send, 200, b'{"%s": true}' % action.encode(), JSON)
            if action == "server":
                return await _respond(send, 200, self._v2_server, JSON)
            if action == "model":
                return await _respond(send, 200, self._v2_model, JSON)
            if action == "model_ready":
                return await _respond(send, 200, json.dumps({"name": self.v2.name, "ready": True}).encode(), JSON)
            content_type = _header(scope, b"content-type")
            if content_type is None or _content_kind(content_type.decode("latin-1")) != "json":
                raise RequestError(415, "BAD_REQUEST", "a V2 inference request is application/json")
            if _header(scope, b"inference-header-content-length") is not None:
                raise RequestError(
                    415, "BAD_REQUEST", "the binary tensor extension is not supported: send the data as JSON"
                )
            body = await self._body(scope, receive)
            if len(body) > OFFLOAD_BYTES:
                text = await asyncio.get_running_loop().run_in_executor(None, self.infer_v2, body)
            else:
                text = self.infer_v2(body)
            return await _respond(send, 200, text, JSON)
        except RequestError as e:
            message = str(e) if len(str(e)) <= _MESSAGE_MAX else str(e)[:_MESSAGE_MAX] + "..."
            return await _respond(
                send, e.status, json.dumps({"error": message}).encode(), JSON, close=e.status in (408, 413)
            )

    def infer_v2(self, body: bytes) -> bytes:
        """The response body of a V2 inference request body; RequestError when refused."""
        if not body:
            raise RequestError(400, "BAD_REQUEST", "the body is empty")
        try:
            payload = _loads(body)
        except (ValueError, RecursionError) as e:
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise RequestError(400, "BAD_REQUEST", f"the body is not valid JSON: {first}") from None
        return json.dumps(self.v2.infer(payload)).encode()

    async def _body(self, scope, receive) -> bytes:
        """The request body, refused (413) past ``max_body_bytes``: by Content-Length
        before reading, and by counting while reading (chunked bodies); 408 when the
        client sends none of it for ``body_timeout`` seconds."""
        limit = self.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError(400, "BAD_REQUEST", "Content-Length is not a number")
            if int(declared) > limit:
                raise RequestError(
                    413,
                    "REQUEST_LIMIT_EXCEEDED",
                    f"the body is over the server's limit of {limit} bytes (--max-body-mb)",
                )
        chunks, size = [], 0
        first = True
        while True:
            if first:  # a small body is whole in the first message: no timer for it
                message, first = await receive(), False
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.body_timeout)
                except asyncio.TimeoutError:
                    raise RequestError(
                        408, "BAD_REQUEST", f"no part of the body came for {self.body_timeout:g} s"
                    ) from None
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(
                    413,
                    "REQUEST_LIMIT_EXCEEDED",
                    f"the body is over the server's limit of {limit} bytes (--max-body-mb)",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def score(self, body: bytes, kind: str) -> bytes:
        """The response body for a request body of ``kind``; RequestError when refused."""
        from gitml.pyfunc.batch import predictions_json, read_table, table_from_payload

        if not body:
            raise RequestError(400, "BAD_REQUEST", "the body is empty")
        payload: Any = None
        if kind == "json":
            try:
                payload = _loads(body)
            except (ValueError, RecursionError) as e:
                first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                raise RequestError(400, "BAD_REQUEST", f"the body is not valid JSON: {first}") from None
        try:
            if kind == "json":
                frame = self.fast.frame(payload) if self.fast is not None else None
                if frame is not None:
                    predictions = self.model.predict_conformed(frame, payload.get("params"))
                    return predictions_json(predictions).encode()
                data, params = table_from_payload(payload, self.schema, what="the body", max_cells=self.max_cells)
            else:
                data, params = read_table(body, kind, self.schema, what="the body", max_cells=self.max_cells)
            predictions = self.model.predict(data, params=params)
        except InputTooLargeError as e:
            raise RequestError(413, "REQUEST_LIMIT_EXCEEDED", str(e)) from None
        except GitmlError as e:
            raise RequestError(
                400, e.error_code if e.error_code != "INTERNAL_ERROR" else "BAD_REQUEST", str(e)
            ) from None
        except Exception as e:
            log.warning("the model failed on a request: %s", type(e).__name__, exc_info=log.isEnabledFor(logging.DEBUG))
            raise RequestError(
                400,
                "BAD_REQUEST",
                f"the model failed on this input ({type(e).__name__}); check it against the model's signature",
            ) from None
        return predictions_json(predictions).encode()


class _Disconnected(Exception):
    pass


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _respond(send, status: int, body: bytes, content_type: bytes, *, close: bool = False) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send, status: int, code: str, message: str, *, close: bool = False) -> None:
    if len(message) > _MESSAGE_MAX:
        message = message[:_MESSAGE_MAX] + "..."
    body = json.dumps({"error_code": code, "message": message}).encode()
    await _respond(send, status, body, JSON, close=close)
