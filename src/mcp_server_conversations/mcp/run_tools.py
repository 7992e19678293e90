"""MCP tools that talk to the model: send_message, get_run, cancel_run, compact_conversation.

They translate and delegate to the runtime (app.runtime); streaming deltas become MCP progress
notifications when the client's request carries a progress token."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from ..models import MAX_STEPS, UNFINISHED, CompactResult, Run
from ..runs.events import RunEvent
from .tools import CREATE, READ, ConvId, app_of, tool_errors

CANCEL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
SEND = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)


class InputMessage(BaseModel):
    role: Literal["user", "system"] = Field(description="user (what the user says) or system (an instruction)")
    content: str = Field(description="The message text")


RunId = Annotated[str, Field(description="Run id (run-…) from send_message", min_length=1)]


def reply_text(run: Run) -> str:
    """The text content of a send_message result: the assistant's reply, or what happened instead."""
    if run.status in UNFINISHED:
        return (
            f"Run {run.id} is {run.status} in the background. Poll get_run with run_id={run.id} until its status "
            "is completed, failed, cancelled or interrupted (the reply is then in its messages); stop it with "
            "cancel_run."
        )
    reply = "\n\n".join(m.content for m in run.messages if m.message_type == "assistant_message" and m.content)
    if run.status == "completed":
        if reply:
            return reply
        if run.stop_reason == "max_steps":
            return f"(no reply: the run stopped after max_steps model calls; run {run.id} shows its tool calls)"
        return "(the model gave an empty reply)"
    return f"(run {run.id} ended {run.status}" + (f": {run.error})" if run.error else ")")


def run_result(run: Run) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=reply_text(run))], structured_content=run.model_dump(mode="json")
    )


def progress_listener(ctx: Context):  # noqa: ANN201 - returns the listener closure
    """A run listener sending each text delta (and each tool call as it starts) as a progress notification."""
    count = 0

    async def on_event(event: RunEvent) -> None:
        nonlocal count
        if event.kind == "text_delta":
            message = event.delta
        elif event.kind == "tool_call":
            message = f"[calling {event.delta}]"
        else:
            return
        count += 1
        await ctx.report_progress(count, None, message=message)

    return on_event


def register(mcp: MCPServer) -> None:
    """Register the tools that run the agent."""

    @mcp.tool(annotations=SEND)
    @tool_errors
    async def send_message(
        ctx: Context,
        conversation_id: ConvId,
        content: Annotated[str | None, Field(description="The user's message text (or use messages)")] = None,
        messages: Annotated[
            list[InputMessage] | None,
            Field(description="Several input messages [{role: user|system, content}] instead of content"),
        ] = None,
        override_model: Annotated[
            str | None,
            Field(
                description="Model handle for this call only (provider/model-name, e.g. openai/gpt-5-mini); "
                "not saved. Otherwise the conversation's, then the agent's, then the server's default model"
            ),
        ] = None,
        max_steps: Annotated[
            int, Field(ge=1, le=MAX_STEPS, description="Most model calls in this turn (each tool call round is one)")
        ] = 10,
        idempotency_key: Annotated[
            str | None,
            Field(
                description="Any unique string for this turn. Retrying with the same key returns (or waits "
                "for) the first call's run instead of starting a second turn: use it when a call may be retried"
            ),
        ] = None,
        background: Annotated[
            bool,
            Field(
                description="Return at once with run_id and status queued/running instead of waiting for the "
                "reply; then poll get_run. Use it for long turns (many tool steps, slow models) or when your "
                "client gives up on tool calls after about 60 seconds"
            ),
        ] = False,
    ) -> Run:
        """Send a message in a conversation and get the agent's reply (one turn: the model may edit its memory
        and search past conversations before answering). The text result is the reply; the structured result is
        the run (run_id, status, model, stop_reason, messages, usage). Sends to one conversation run one at a
        time in arrival order; different conversations run in parallel. The reply streams as progress
        notifications when the request has a progress token. For long turns, or clients with short tool timeouts
        (about 60 s), pass background=true and poll get_run with the returned run_id; pass an idempotency_key to
        make retries safe."""
        runtime = app_of(ctx).runtime
        run = await runtime.send(
            conversation_id,
            content=content,
            messages=[m.model_dump() for m in messages] if messages else None,
            override_model=override_model,
            max_steps=max_steps,
            idempotency_key=idempotency_key,
            background=background,
            listener=None if background else progress_listener(ctx),
        )
        return run_result(run)  # type: ignore[return-value]  # passed through; validated against Run

    @mcp.tool(annotations=READ)
    @tool_errors
    async def get_run(ctx: Context, run_id: RunId) -> Run:
        """Read a run of send_message: status (queued, running, completed, failed, cancelled, interrupted),
        the messages it has produced so far, partial_text while the model is writing, usage and, once finished,
        stop_reason. Poll it after send_message(background=true) until the status is no longer queued/running."""
        return run_result(await app_of(ctx).runtime.get_run(run_id))  # type: ignore[return-value]

    @mcp.tool(annotations=CANCEL)
    @tool_errors
    async def cancel_run(ctx: Context, run_id: RunId) -> Run:
        """Stop a queued or running run of send_message: it ends cancelled, and its input and partial output
        leave the conversation's context. A run that has already ended is returned as it ended."""
        return run_result(await app_of(ctx).runtime.cancel_run(run_id))  # type: ignore[return-value]

    @mcp.tool(annotations=CREATE)
    @tool_errors
    async def compact_conversation(ctx: Context, conversation_id: ConvId) -> CompactResult:
        """Summarize a conversation's oldest in-context messages into one summary message now (it also happens
        automatically near the context window). The messages stay in history and search. Returns the summary and
        the in-context message counts before and after (system message not counted)."""
        return await app_of(ctx).runtime.compact(conversation_id)
