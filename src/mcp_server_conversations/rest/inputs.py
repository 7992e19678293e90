"""What a Letta send carries, as the runtime's inputs: messages (text and image parts), approvals
(the results of client-side tool calls, or denials), and the client's own tools.

Images are stored as a text placeholder naming the image, so history and search stay text; a model
litellm knows to take images also gets the image itself in that turn's model calls (images are never
stored: later turns see the placeholder). A conversation whose last step asked the client to run tools
waits for their results: a send without them gets 409, as on Letta's server."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..app import App
from ..errors import ConflictError, ValidationError
from .common import LettaBody

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what chat-completions providers accept


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "text"
    text: str | None = None
    source: dict[str, Any] | None = None
    image_url: dict[str, Any] | str | None = None


class ApprovalItem(LettaBody):
    type: Literal["tool", "approval"] = "approval"
    tool_call_id: str
    tool_return: str | list[ContentPart] | None = None
    status: Literal["success", "error"] = "success"
    approve: bool | None = None
    reason: str | None = None


class MessageIn(LettaBody):
    type: str | None = None  # "message" (or absent) or "approval"
    role: str = "user"
    content: str | list[ContentPart] | None = None
    otid: str | None = None
    approvals: list[ApprovalItem] | None = None
    # Letta's older single-approval form
    approve: bool | None = None
    approval_request_id: str | None = None
    reason: str | None = None


class ClientTool(LettaBody):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


def image_placeholder(part: ContentPart) -> str:
    source = part.source or {}
    kind = source.get("media_type") or "image"
    image_url = part.image_url
    if source.get("url") or isinstance(image_url, (str, dict)):
        url = source.get("url") or (image_url if isinstance(image_url, str) else (image_url or {}).get("url"))
        if isinstance(url, str) and not url.startswith("data:"):
            return f"[image: {kind} at {url[:300]}]"
    size = len(source.get("data") or "") * 3 // 4
    return f"[image: {kind}, {size} bytes]" if size else f"[image: {kind}]"


def image_part(part: ContentPart) -> dict[str, Any]:
    """Letta's image content (`source` base64 or url, or `image_url`) as a chat-completions image part."""
    source = part.source or {}
    url = source.get("url")
    if source.get("data"):
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    elif url is None:
        url = part.image_url if isinstance(part.image_url, str) else (part.image_url or {}).get("url")
    return {"type": "image_url", "image_url": {"url": url}}


def text_of(content: str | list[ContentPart], where: str) -> str:
    """Letta content (a string, or text and image parts) as our message text."""
    if isinstance(content, str):
        return content
    parts = []
    for i, part in enumerate(content):
        if part.type == "text" and part.text is not None:
            parts.append(part.text)
        elif part.type in ("image", "image_url"):
            parts.append(image_placeholder(part))
        else:
            raise ValidationError(f"{where}[{i}]", f"{part.type!r} content is not supported; send text or image parts")
    return "\n".join(parts)


def denial(reason: str | None) -> str:
    return f"Error: request to call tool denied. User reason: {reason or 'none given'}"


def approval_inputs(m: MessageIn, where: str) -> list[dict[str, Any]]:
    """An approval message as tool results: the client's returns, and denials as error results."""
    items = list(m.approvals or [])
    if not items and m.approval_request_id is not None and m.approve is not None:
        items = [ApprovalItem(tool_call_id=m.approval_request_id, approve=m.approve, reason=m.reason)]
    if not items:
        raise ValidationError(f"{where}.approvals", "an approval message lists approvals (tool results or denials)")
    out = []
    for j, a in enumerate(items):
        if a.type == "tool" or a.tool_return is not None:
            text = text_of(a.tool_return if a.tool_return is not None else "", f"{where}.approvals[{j}].tool_return")
            out.append({"role": "tool", "tool_call_id": a.tool_call_id, "content": text, "status": a.status})
        elif a.approve is False:
            out.append({"role": "tool", "tool_call_id": a.tool_call_id, "content": denial(a.reason), "status": "error"})
        else:
            raise ValidationError(
                f"{where}.approvals[{j}]",
                f"tool call {a.tool_call_id} runs on the client: send its result as "
                "{type: 'tool', tool_call_id, tool_return, status}, or deny it with {approve: false, reason}",
            )
    return out


def messages_of(messages: list[MessageIn]) -> tuple[list[dict[str, Any]], list[str]]:
    """The send's inputs for the runtime (tool results first, then messages) and their otids."""
    results: list[dict[str, Any]] = []
    msgs: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.type == "approval":
            results += approval_inputs(m, where)
        elif m.content is None:
            raise ValidationError(f"{where}.content", "Field required")
        else:
            msg: dict[str, Any] = {"role": m.role, "content": text_of(m.content, f"{where}.content")}
            if isinstance(m.content, list) and (images := [image_part(p) for p in m.content if p.type != "text"]):
                msg["images"] = images
            msgs.append(msg)
    return results + msgs, [m.otid for m in messages if m.otid]


def tool_schemas(tools: list[ClientTool] | None) -> list[dict[str, Any]]:
    """Client tools as chat-completions tool schemas."""
    out = []
    for i, t in enumerate(tools or []):
        if not TOOL_NAME.match(t.name):
            raise ValidationError(f"client_tools[{i}].name", "use 1-64 letters, digits, _ or -")
        params = t.parameters or {"type": "object", "properties": {}}
        out.append(
            {"type": "function", "function": {"name": t.name, "description": t.description or "", "parameters": params}}
        )
    return out


async def pending_calls(app: App, conversation_id: str) -> list[str]:
    """Ids of the client tool calls the conversation waits for (the last request's unanswered calls)."""
    latest = await app.store.list_runs(
        conversation_id=conversation_id, agent_id=None, statuses=None, limit=1, desc=True
    )
    if not latest or latest[0].stop_reason in ("end_turn", "max_steps"):
        return []  # the usual case, known without reading the context
    pending: list[str] = []
    for m in await app.store.context_messages(conversation_id):
        if m.message_type == "tool_call_message" and m.status == "requires_approval":
            pending = [c.tool_call_id for c in m.tool_calls or []]
        elif m.message_type == "tool_return_message" and m.tool_call_id in pending:
            pending.remove(m.tool_call_id)
        elif m.message_type in ("user_message", "assistant_message"):
            pending = []
    return pending


async def check_pending(app: App, conversation_id: str, inputs: list[dict[str, Any]]) -> None:
    """A send must answer every waiting client tool call, and only those."""
    pending = await pending_calls(app, conversation_id)
    answered = [m["tool_call_id"] for m in inputs if m["role"] == "tool"]
    if pending and not answered:  # Letta's wording: Letta Code recognizes it and answers the calls first
        raise ConflictError(
            "Cannot send a new message: The agent is waiting for approval on a tool call. Please approve or "
            f"deny the pending request before continuing. (waiting: {', '.join(pending)})"
        )
    if answered and not pending:
        raise ValidationError("approvals", "No tool call is currently awaiting approval in this conversation")
    if sorted(answered) != sorted(pending):
        raise ValidationError(
            "approvals", f"Invalid tool call IDs. Expected {sorted(pending)}, but received {sorted(answered)}"
        )
