"""What a send carries, checked once for every transport (MCP tools, Letta's REST routes): its messages
and its options. The limits here are the product's (models.MAX_STEPS); the MCP tools' schemas state
the same numbers so clients see them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ValidationError
from ..models import MAX_KEY_CHARS, MAX_STEPS
from ..storage import NewMessage


class CheckText(Protocol):
    def __call__(self, field: str, value: str, *, allow_empty: bool = False) -> str: ...


@dataclass(frozen=True, slots=True)
class Input:
    """One message of a send: user or system text, or a client tool's result (role tool)."""

    role: str
    content: str
    tool_call_id: str | None = None
    status: str | None = None
    images: tuple[dict[str, Any], ...] = ()  # chat-completions image parts for the model; the text stays

    def message(self, run_id: str) -> NewMessage:
        if self.role == "tool":
            return NewMessage(
                "tool_return_message",
                "tool",
                content=self.content,
                tool_call_id=self.tool_call_id,
                status=self.status,
                run_id=run_id,
            )
        kind = "user_message" if self.role == "user" else "system_message"
        return NewMessage(kind, self.role, content=self.content, run_id=run_id)


def send_inputs(check_text: CheckText, content: str | None, messages: list[dict[str, Any]] | None) -> list[Input]:
    """A send's input: `content` (one user message) or `messages` (user, system, or a client tool's
    result for a call that waits for it), each text checked by `check_text` (size limits)."""
    if content is not None and messages:
        raise ValidationError("messages", "give either content or messages, not both")
    if content is not None:
        return [Input("user", check_text("content", content))]
    if not messages:
        raise ValidationError("content", "the message is empty; give its text in content (or a messages list)")
    out = []
    for i, m in enumerate(messages):
        role, text = (m.get("role"), m.get("content")) if isinstance(m, dict) else (None, None)
        if role == "tool":
            out.append(_tool_input(check_text, i, m))
            continue
        if role not in ("user", "system"):
            raise ValidationError(f"messages[{i}].role", f"{role!r} is not allowed; use user or system")
        if not isinstance(text, str):
            raise ValidationError(f"messages[{i}].content", "must be a string")
        images = _images(i, m.get("images")) if role == "user" else ()
        out.append(Input(role, check_text(f"messages[{i}].content", text), images=images))
    return out


def _tool_input(check_text: CheckText, i: int, m: dict[str, Any]) -> Input:
    """A client tool's result for a call that waits for it (Letta's approvals)."""
    call_id, text, status = m.get("tool_call_id"), m.get("content"), m.get("status") or "success"
    if not isinstance(call_id, str) or not call_id:
        raise ValidationError(f"messages[{i}].tool_call_id", "a tool result names the tool call it answers")
    if status not in ("success", "error") or not isinstance(text, str):
        raise ValidationError(f"messages[{i}]", "a tool result has text content and status success or error")
    return Input("tool", check_text(f"messages[{i}].content", text, allow_empty=True), call_id, status)


def _images(i: int, parts: Any) -> tuple[dict[str, Any], ...]:
    """Image parts sent beside a user message's text (Letta's image content), for models that take
    images: `{"type": "image_url", "image_url": {"url": "data:image/…;base64,…" or "https://…"}}`."""
    if parts is None:
        return ()
    if not isinstance(parts, list):
        raise ValidationError(f"messages[{i}].images", "must be a list of image parts")
    for j, part in enumerate(parts):
        url = part.get("image_url", {}).get("url") if isinstance(part, dict) else None
        if not (isinstance(url, str) and url.startswith(("data:image/", "https://", "http://"))):
            raise ValidationError(f"messages[{i}].images[{j}]", "give an image as a data:image/… or http(s) URL")
    return tuple(parts)


def check_send_options(max_steps: int, idempotency_key: str | None) -> None:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= MAX_STEPS:
        raise ValidationError("max_steps", f"must be between 1 and {MAX_STEPS} (got {max_steps})")
    if idempotency_key is not None and not (0 < len(idempotency_key.strip()) <= MAX_KEY_CHARS):
        raise ValidationError("idempotency_key", f"must be 1-{MAX_KEY_CHARS} characters")
