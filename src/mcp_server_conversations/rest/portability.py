"""Letta's agent file routes (`POST /v1/agents/import`, `GET /v1/agents/{id}/export`) and the streamed
conversation export (`GET /v1/conversations/{id}/export`, for conversations too long for one MCP result)."""

from __future__ import annotations

from typing import Literal

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..app import App
from ..errors import ValidationError
from .common import LettaBody, json_response, parse_query, route


class ExportQuery(LettaBody):
    conversation_id: str | None = None


class ConversationExportQuery(LettaBody):
    format: Literal["json", "markdown"] = "json"


async def import_agent(app: App, request: Request) -> Response:
    """Multipart `file` as Letta's SDK (`agents.import_file`) sends it; `name` (or Letta's older
    `override_name`) renames the agent. Letta's answer is `{agent_ids}`; what was skipped comes beside it."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ValidationError("file", "send the agent file as multipart/form-data in a field named `file`")
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ValidationError("file", "missing: send the agent file in a multipart field named `file`")
    raw = await upload.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("file", "not UTF-8 text; an agent file is JSON") from None
    name = form.get("name") or form.get("override_name")
    result = await app.portability.import_agent(text, name if isinstance(name, str) and name else None)
    body = result.model_dump(mode="json")
    return json_response(
        {
            "agent_ids": [result.agent["id"]],
            "conversation_id": result.conversation.id,
            "skipped": body["skipped"],
            "raised_limits": body["raised_limits"],
        }
    )


async def export_agent(app: App, request: Request) -> Response:
    q = parse_query(request, ExportQuery)
    return json_response(await app.portability.export_agent(request.path_params["agent_id"], q.conversation_id))


async def export_conversation(app: App, request: Request) -> Response:
    """Written as it is read, a page of history at a time: no size limit, memory stays flat."""
    q = parse_query(request, ConversationExportQuery)
    conv = await app.service.get_conversation(request.path_params["conversation_id"])
    stream = app.portability.export_stream(conv.id, q.format, conv=conv)
    media = "application/json" if q.format == "json" else "text/markdown; charset=utf-8"
    filename = f"{conv.id}.{'json' if q.format == 'json' else 'md'}"
    return StreamingResponse(
        (piece.encode() async for piece in stream),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def routes(app: App) -> list:
    return [
        route(app, "/agents/import", import_agent, "POST"),
        route(app, "/agents/{agent_id}/export", export_agent, "GET"),
        route(app, "/conversations/{conversation_id}/export", export_conversation, "GET"),
    ]
