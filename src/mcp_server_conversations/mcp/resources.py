"""MCP resources: each memory block and each conversation's transcript, readable, listed and subscribable.

- `conversations://agents/{agent_id}/blocks/{label}` (label percent-encoded): the block's value, text/plain.
- `conversations://conversations/{id}/transcript`: the conversation's history as Markdown.

Everything goes through the conversation service's lookups, so a principal lists, reads and subscribes
to only what the service lets it see; anything else is answered as an unknown resource. Changes come
from the app's change feed (service/changes.py), so a subscriber hears of edits made by any process on
the database: `resources/subscribe` connections (2025 revisions) get `notifications/resources/updated`
on their connection, `subscriptions/listen` streams (2026-07-28) through the SDK's bus, and both get
`notifications/resources/list_changed` when agents, blocks or conversations come or go.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, cast
from urllib.parse import quote, unquote

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
)
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ..app import App
from ..errors import ConversationsError, NotFoundError, ValidationError
from ..service.changes import Change
from ..service.transcript import transcript
from ..util import decode_cursor, encode_cursor

log = logging.getLogger(__name__)

SCHEME = "conversations://"
BLOCK_TEMPLATE = SCHEME + "agents/{agent_id}/blocks/{label}"
TRANSCRIPT_TEMPLATE = SCHEME + "conversations/{conversation_id}/transcript"
PAGE = 100  # resources in one page of resources/list
MAX_LISTEN_URIS = 1000  # resource URIs one subscriptions/listen stream may name
SEND_WITHIN = 2.0  # seconds one 2025-era connection may take to accept a batch of notifications


def block_uri(agent_id: str, label: str) -> str:
    return f"{SCHEME}agents/{quote(agent_id, safe='')}/blocks/{quote(label, safe='')}"


def transcript_uri(conversation_id: str) -> str:
    return f"{SCHEME}conversations/{quote(conversation_id, safe='')}/transcript"


def parse(uri: str) -> tuple[str, str, str] | None:
    """("block", agent_id, label), ("transcript", conversation_id, "") or None for a URI of neither shape."""
    if not isinstance(uri, str) or not uri.startswith(SCHEME):
        return None
    parts = uri[len(SCHEME) :].split("/")
    if len(parts) == 4 and parts[0] == "agents" and parts[2] == "blocks" and parts[1] and parts[3]:
        return "block", unquote(parts[1]), unquote(parts[3])
    if len(parts) == 3 and parts[0] == "conversations" and parts[2] == "transcript" and parts[1]:
        return "transcript", unquote(parts[1]), ""
    return None


def unknown(uri: str) -> MCPError:
    """The SDK's own answer to a URI it does not know (ResourceNotFoundError in MCPServer)."""
    return MCPError(code=types.INVALID_PARAMS, message=f"Unknown resource: {uri}", data={"uri": uri})


def app_of(ctx: ServerRequestContext[Any, Any]) -> App:
    return cast(App, ctx.lifespan_context)


async def canonical(app: App, uri: str) -> str:
    """The URI in the form change notifications carry, if the principal may see that resource;
    MCPError (unknown resource) otherwise."""
    found = parse(uri)
    try:
        if found is not None and found[0] == "block":
            await app.service.get_block(found[1], found[2])
            return block_uri(found[1], found[2])
        if found is not None:
            await app.service.get_conversation(found[1])
            return transcript_uri(found[1])
    except (NotFoundError, ValidationError):
        pass
    raise unknown(uri)


async def read(app: App, uri: str) -> types.ReadResourceResult:
    found = parse(uri)
    try:
        if found is not None and found[0] == "block":
            block = await app.service.get_block(found[1], found[2])
            text, mime = block.value, "text/plain"
        elif found is not None:
            text, mime = await transcript(app.service, found[1]), "text/markdown"
        else:
            raise unknown(uri)
    except (NotFoundError, ValidationError):
        raise unknown(uri) from None
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, text=text, mime_type=mime)])


async def list_page(app: App, cursor: str | None) -> types.ListResourcesResult:
    """One page: each agent's blocks, then its conversations' transcripts (oldest first), agent by agent.
    The cursor holds the current agent's place in the agent list and how far into it the page got."""
    state: dict[str, Any] = {"a": None, "b": 0, "c": None, "p": "b"}
    if cursor:
        got = decode_cursor(cursor, kind="resources")
        state = {k: got.get(k) for k in state}
        if not isinstance(state["b"], int) or state["p"] not in ("b", "c"):
            raise ValidationError("cursor", "not a cursor this server made; list again without one")
    out: list[types.Resource] = []
    while True:
        agents = await app.service.list_agents(limit=1, after=state["a"])
        if not agents.agents:
            return types.ListResourcesResult(resources=out, next_cursor=None)
        agent = agents.agents[0]
        if state["p"] == "b":
            blocks = agent.memory_blocks[state["b"] : state["b"] + PAGE - len(out)]
            out += [
                types.Resource(
                    uri=block_uri(agent.id, b.label),
                    name=b.label,
                    title=f"{agent.name}: memory block {b.label}",
                    description=b.description,
                    mime_type="text/plain",
                    size=len(b.value.encode()),
                )
                for b in blocks
            ]
            state["b"] += len(blocks)
            if state["b"] < len(agent.memory_blocks):
                break
            state["p"], state["c"] = "c", None
        if len(out) >= PAGE:
            break
        convs = await app.service.list_conversations(
            agent.id, order_by="created_at", order="asc", limit=PAGE - len(out), after=state["c"]
        )
        out += [
            types.Resource(
                uri=transcript_uri(c.id),
                name=f"transcript {c.id}",
                title=f"{agent.name}: {c.summary or 'conversation ' + c.id}",
                description=f"{c.message_count} messages",
                mime_type="text/markdown",
            )
            for c in convs.conversations
        ]
        state["c"] = convs.next_cursor
        if convs.next_cursor is not None:
            break
        if agents.next_cursor is None:
            return types.ListResourcesResult(resources=out, next_cursor=None)
        state = {"a": agents.next_cursor, "b": 0, "c": None, "p": "b"}
        if len(out) >= PAGE:
            break
    return types.ListResourcesResult(resources=out, next_cursor=encode_cursor({"kind": "resources", **state}))


TEMPLATES = [
    types.ResourceTemplate(
        uri_template=BLOCK_TEMPLATE,
        name="memory block",
        description="An agent's memory block: its current value (label percent-encoded)",
        mime_type="text/plain",
    ),
    types.ResourceTemplate(
        uri_template=TRANSCRIPT_TEMPLATE,
        name="transcript",
        description="A conversation's whole history as a Markdown transcript",
        mime_type="text/markdown",
    ),
]


class Subscriptions:
    """Who hears of which changes, in one MCP server: connections that subscribed (2025 revisions) and
    the listen streams' bus (2026-07-28), fed by the app's change feed from the first subscription on."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)
        # 2025 connections (the SDK's Connection: a new ServerSession wraps it per message) -> their URIs.
        self.connections: dict[Any, set[str]] = {}
        self.listen_uris: dict[int, frozenset[str]] = {}  # open listen streams' URIs, for a resync
        self._fed: set[int] = set()  # apps whose change feed this server listens to

    async def feed_from(self, app: App) -> None:
        if id(app) not in self._fed:
            self._fed.add(id(app))
            await app.changes.subscribe(self.deliver)

    def connection(self, ctx: ServerRequestContext[Any, Any]) -> Any:
        """The 2025-era connection of the request (None on 2026-07-28: its changes ride listen streams)."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        conn = getattr(ctx.session, "_connection", None)  # no public accessor; it outlives the session
        if conn is not None and conn not in self.connections:
            self.connections[conn] = set()
            conn.exit_stack.callback(self.connections.pop, conn, None)
        return conn

    async def deliver(self, changes: list[Change] | None) -> None:
        updated: set[str] = set()
        listed = changes is None
        for kind, key in changes or []:
            if kind == "b":
                agent_id, _, label = key.partition(":")
                updated.add(block_uri(agent_id, label))
            elif kind == "t":
                updated.add(transcript_uri(key))
            else:
                listed = True
        if changes is None:  # some may have been missed: everything subscribed may have changed
            updated = set().union(*self.connections.values(), *self.listen_uris.values())
        events: list[ServerEvent] = [ResourceUpdated(uri=u) for u in sorted(updated)]
        if listed:
            events.append(ResourcesListChanged())
        for event in events:
            await self.bus.publish(event)
        for conn, uris in list(self.connections.items()):
            with anyio.move_on_after(SEND_WITHIN):  # a client that stopped reading holds up no one else for long
                for uri in sorted(updated & uris):
                    await conn.send_resource_updated(uri)
                if listed:
                    await conn.send_resource_list_changed()


def register(mcp: MCPServer) -> Subscriptions:
    """Serve resources/list, templates, read, subscribe/unsubscribe and subscriptions/listen."""
    subs = Subscriptions()
    server = mcp._lowlevel_server  # resource handlers with pagination and our lookups replace MCPServer's

    def errors(fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
            try:
                return await fn(ctx, params)
            except ValidationError as e:
                raise MCPError(code=types.INVALID_PARAMS, message=e.message) from None
            except ConversationsError as e:
                raise MCPError(code=types.INTERNAL_ERROR, message=e.message) from None

        return wrapper

    @errors
    async def list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListResourcesResult:
        subs.connection(ctx)  # a client that lists resources hears when the list changes
        await subs.feed_from(app_of(ctx))
        return await list_page(app_of(ctx), params.cursor)

    async def list_templates(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=TEMPLATES)

    @errors
    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await read(app_of(ctx), params.uri)

    @errors
    async def subscribe(ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = await canonical(app_of(ctx), params.uri)
        conn = subs.connection(ctx)
        await subs.feed_from(app_of(ctx))
        if conn is not None:
            subs.connections[conn].add(uri)
        return types.EmptyResult()

    @errors
    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        conn = subs.connection(ctx)
        found = parse(params.uri)
        if conn is not None and found is not None:
            uri = block_uri(found[1], found[2]) if found[0] == "block" else transcript_uri(found[1])
            subs.connections[conn].discard(uri)
        return types.EmptyResult()

    @errors
    async def listen(
        ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """The SDK's listen stream, over only the URIs this principal may see (others are dropped from the
        honored filter, as a subscription to an unknown resource is: it never fires)."""
        wanted = params.notifications.resource_subscriptions or []
        if len(wanted) > MAX_LISTEN_URIS:
            raise ValidationError("resourceSubscriptions", f"at most {MAX_LISTEN_URIS} URIs per stream")
        uris: list[str] = []
        for uri in wanted:
            try:
                uris.append(await canonical(app_of(ctx), uri))
            except MCPError:
                continue
        notifications = params.notifications.model_copy(update={"resource_subscriptions": uris or None})
        await subs.feed_from(app_of(ctx))
        key = id(notifications)
        subs.listen_uris[key] = frozenset(uris)
        try:
            return await subs.listen(ctx, params.model_copy(update={"notifications": notifications}))
        finally:
            subs.listen_uris.pop(key, None)

    server.add_request_handler("resources/list", types.PaginatedRequestParams, list_resources)
    server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, list_templates)
    server.add_request_handler("resources/read", types.ReadResourceRequestParams, read_resource)
    server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
    server.add_request_handler("subscriptions/listen", types.SubscriptionsListenRequestParams, listen)
    # 2025 revisions advertise listChanged from these options (2026-07-28 derives it from listen being served);
    # every transport asks for the initialization options with none, so the server's own default is set here.
    server.create_initialization_options = functools.partial(  # type: ignore[method-assign]
        server.create_initialization_options, NotificationOptions(resources_changed=True)
    )
    return subs
