"""What every REST route shares: our error tree mapped to Letta's `{"detail": ...}` bodies in one
place, and request bodies / query strings parsed into pydantic models with errors that name the field."""

from __future__ import annotations

import functools
import logging
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..app import App
from ..errors import ConversationsError, StorageUnavailableError, ValidationError, VersionConflictError
from ..inputs import check_value, loads

log = logging.getLogger("mcp_server_conversations.rest")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[App, Request], Awaitable[Response]]

# Our errors' statuses a retry may fix (a provider's rate limit or outage); the SDK retries
# 408, 409, 429 and >= 500 unless told `x-should-retry: false`, which every other error says.
RETRYABLE = {408, 429, 503, 504}


class LettaBody(BaseModel):
    """Base of request models: Letta sends many optional keys we do not use; they are ignored."""

    model_config = ConfigDict(extra="ignore")


def error_response(e: ConversationsError) -> JSONResponse:
    """The one mapping of our error tree to HTTP: the error's status, `{"detail": message}`, and
    `x-should-retry: false` where the SDK's automatic retry would only repeat the failure."""
    headers = {} if e.status_code in RETRYABLE else {"x-should-retry": "false"}
    if isinstance(e, StorageUnavailableError):
        headers["Retry-After"] = str(e.retry_after)
    body: dict[str, Any] = {"detail": e.message}
    if isinstance(e, VersionConflictError):
        body["current_version"] = e.current_version
    return JSONResponse(body, status_code=e.status_code, headers=headers)


def endpoint(app: App, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint over `fn(app, request)` whose errors of our tree become Letta error bodies."""

    @functools.wraps(fn)
    async def handle(request: Request) -> Response:
        try:
            return await fn(app, request)
        except ConversationsError as e:
            return error_response(e)
        except Exception:  # a bug: keep Letta's error shape, and the details in our log only
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"detail": "internal server error; see the server log"}, status_code=500)

    return handle


def route(app: App, path: str, fn: Handler, *methods: str) -> Route:
    """A route of `fn` under /v1 (see `endpoint`)."""
    return Route(path, endpoint(app, fn), methods=list(methods))


def _validation(e: pydantic.ValidationError, where: str) -> ValidationError:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or where
    return ValidationError(loc, f"{err.get('msg', 'invalid value')} (in the {where})")


async def parse_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`; an empty body (the SDK's fork/cancel POSTs) counts as `{}`."""
    raw = await request.body()
    data: Any = loads(raw) if raw.strip() else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationError("body", f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise _validation(e, "request body") from None


def _is_list(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is list or any(typing.get_origin(a) is list for a in args)


def parse_query(request: Request, model: type[M]) -> M:
    """The query string as `model`; list fields take repeated keys (`?t=a&t=b`), as the SDK sends them."""
    q = request.query_params
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in q:
            continue
        data[name] = q.getlist(name) if _is_list(info.annotation) else q[name]
    check_value("", data, "query string")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise _validation(e, "query string") from None


async def conversation_id(app: App, request: Request, agent_id: str | None = None) -> str:
    """The path's conversation id. Letta's agent-direct mode names the agent's default conversation
    (made on first use): `default` with the agent's id (`agent_id` from the body, else the query), or
    the agent's id itself."""
    conv = request.path_params["conversation_id"]
    return await resolve_conversation(app, conv, agent_id or request.query_params.get("agent_id"))


async def resolve_conversation(app: App, conv: str, agent_id: str | None) -> str:
    if conv.startswith("agent-"):
        agent_id, conv = conv, "default"
    if conv != "default":
        return conv
    if not agent_id:
        raise ValidationError("agent_id", "conversation 'default' is an agent's default conversation: give agent_id")
    return (await app.service.default_conversation(agent_id)).id


def json_response(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status_code)


def page_by_id(items: list[Any], *, after: str | None, before: str | None, limit: int | None, order: str) -> list[Any]:
    """Letta's cursor page over a small in-memory list: items after/before the given ids in `order`."""
    seq = list(reversed(items)) if order == "desc" else list(items)
    ids = [i.id for i in seq]
    for name, cursor in (("after", after), ("before", before)):
        if cursor is not None and cursor not in ids:
            raise ValidationError(name, f"{cursor} is not in this list; pass an id from a previous page")
    start = ids.index(after) + 1 if after is not None else 0
    stop = ids.index(before) if before is not None else len(seq)
    window = seq[start:stop]
    if limit is not None:
        window = window[-limit:] if before is not None and after is None else window[:limit]
    return window
