"""The message stream as the SDK experiences it: retries that must not store a turn twice, keepalives
on long turns, provider failures as chunks, runs that finish without a reader, cancel, resume,
pings, type filters and the JSON (`streaming: false`) answer."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import letta_client
from fake_provider import FakeProvider
from letta_client.types.agents import AssistantMessage, LettaResponse, UserMessage
from letta_client.types.agents.letta_streaming_response import LettaErrorMessage, LettaPing, LettaStopReason
from rest_helpers import TOKEN, letta, rest_server, sdk

from mcp_server_conversations.config import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUND = 30.0  # bounds a wait that would otherwise hang a broken test; asserts nothing about speed


class WithholdingProxy:
    """A loopback TCP proxy that withholds the response to the first message POST it carries until
    the client hangs up: to the SDK the server looks silent, so it times out and re-POSTs."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.message_posts = 0
        self.retried = threading.Event()  # the second message POST (the SDK's retry) arrived
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> WithholdingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        withhold = False

        async def upstream() -> None:
            nonlocal withhold
            while data := await client_r.read(65536):
                if data.startswith(b"POST /v1/conversations/") and b"/messages " in data.split(b"\r\n", 1)[0]:
                    self.message_posts += 1
                    withhold = withhold or self.message_posts == 1
                    if self.message_posts == 2:
                        self.retried.set()
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if not withhold:
                    client_w.write(data)
                    await client_w.drain()
            client_w.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)


def user_texts(client: letta_client.Letta, conv_id: str) -> list[str]:
    return [m.content for m in client.conversations.messages.list(conv_id, order="asc") if isinstance(m, UserMessage)]


def timeout_then_retry(base_url: str, proxied_url: str, fake: FakeProvider, proxy: WithholdingProxy) -> None:
    client = letta(base_url)
    conv = client.conversations.create(agent_id=client.agents.create(name="retry").id)
    fake.enqueue("Answer after a retry", wait_for=proxy.retried)  # in flight when the retry joins it
    retrying = letta(proxied_url, max_retries=2)
    stream = retrying.conversations.messages.create(
        conv.id, messages=[{"role": "user", "content": "Slow network?"}], timeout=2.0
    )
    chunks = list(stream)  # the retry's stream: the first attempt's run, joined
    assert proxy.message_posts == 2
    assert [c.content for c in chunks if isinstance(c, AssistantMessage)] == ["Answer after a retry"]
    assert isinstance(chunks[-2], LettaStopReason) and chunks[-2].stop_reason == "end_turn"
    assert user_texts(client, conv.id) == ["Slow network?"]  # stored once
    history = list(client.conversations.messages.list(conv.id, order="asc"))
    assert [m.message_type for m in history] == ["user_message", "assistant_message"]
    assert len(fake.requests) == 1


async def test_a_client_timeout_and_the_sdk_retry_store_one_turn(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with rest_server(settings) as served, WithholdingProxy(served.port) as proxy:
        await sdk(timeout_then_retry, served.base_url, f"http://127.0.0.1:{proxy.port}", fake_provider, proxy)


async def test_otid_is_an_idempotency_key_and_identical_sends_without_one_are_two_turns(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with rest_server(settings) as served:
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=BOUND) as http:
            agent = (await http.post("/v1/agents/", json={"name": "otid"})).json()
            conv = (await http.post("/v1/conversations/", params={"agent_id": agent["id"]}, json={})).json()
            path = f"/v1/conversations/{conv['id']}/messages"
            body = {"messages": [{"role": "user", "content": "Once only", "otid": "otid-123"}]}
            first = await http.post(path, json=body)
            second = await http.post(path, json=body)
            for r in (first, second):
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                data = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
                assert [d["content"] for d in data if d["message_type"] == "assistant_message"] == [
                    "Fake reply to: Once only"
                ]
                assert r.text.rstrip().endswith("data: [DONE]")
            plain = {"messages": [{"role": "user", "content": "Say it twice"}]}
            await http.post(path, json=plain)
            await http.post(path, json=plain)
            listed = (await http.get(path, params={"order": "asc"})).json()
        users = [m["content"] for m in listed if m["message_type"] == "user_message"]
        assert users == ["Once only", "Say it twice", "Say it twice"]
        assert len(fake_provider.requests) == 3


def long_turn_with_pings(base_url: str, fake: FakeProvider) -> None:
    client = letta(base_url)
    conv = client.conversations.create(agent_id=client.agents.create(name="slow").id)
    fake.enqueue("Slow but sure", delay=0.5)
    chunks = list(
        client.conversations.messages.create(
            conv.id, messages=[{"role": "user", "content": "Take your time"}], include_pings=True
        )
    )
    first_reply = next(i for i, c in enumerate(chunks) if isinstance(c, AssistantMessage))
    assert any(isinstance(c, LettaPing) for c in chunks[:first_reply])
    assert chunks[first_reply].content == "Slow but sure"


async def test_long_turns_get_keepalives_comments_or_pings(settings: Settings, fake_provider: FakeProvider) -> None:
    async with rest_server(settings) as served:
        served.app.rest.sse_keepalive = 0.05  # the real interval is 15 s, under the SDK's 60 s read timeout
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=BOUND) as http:
            agent = (await http.post("/v1/agents/", json={"name": "slow"})).json()
            conv = (await http.post("/v1/conversations/", params={"agent_id": agent["id"]}, json={})).json()
            fake_provider.enqueue("Eventually", delay=0.5)
            lines: list[str] = []
            body = {"messages": [{"role": "user", "content": "Hello?"}]}
            async with http.stream("POST", f"/v1/conversations/{conv['id']}/messages", json=body) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    lines.append(line)
        first_data = next(i for i, line in enumerate(lines) if line.startswith("data: {"))
        assert ": keepalive" in lines[:first_data]
        assert [line for line in lines if line][-1] == "data: [DONE]"
        await sdk(long_turn_with_pings, served.base_url, fake_provider)


def provider_failure(base_url: str, fake: FakeProvider) -> None:
    client = letta(base_url)
    conv = client.conversations.create(agent_id=client.agents.create(name="fails").id)
    fake.enqueue(error_status=500, error_message="upstream exploded")
    chunks = list(client.conversations.messages.create(conv.id, messages=[{"role": "user", "content": "Hi"}]))
    errors = [c for c in chunks if isinstance(c, LettaErrorMessage)]
    assert len(errors) == 1 and "upstream exploded" in errors[0].message and errors[0].run_id.startswith("run-")
    assert errors[0].error_type.endswith("Error")
    assert isinstance(chunks[-2], LettaStopReason) and chunks[-2].stop_reason == "llm_api_error"
    failed = list(client.conversations.messages.list(conv.id))
    assert [(m.message_type, m.is_err) for m in failed] == [("user_message", True)]


async def test_a_provider_failure_is_an_error_chunk_and_llm_api_error(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with rest_server(settings) as served:
        await sdk(provider_failure, served.base_url, fake_provider)


def never_read(base_url: str, fake: FakeProvider) -> None:
    client = letta(base_url)
    conv = client.conversations.create(agent_id=client.agents.create(name="unread").id)
    fake.enqueue("Nobody reads me", chunk_delay=0.01)
    stream = client.conversations.messages.create(conv.id, messages=[{"role": "user", "content": "Fire and forget"}])
    deadline = time.monotonic() + BOUND
    while True:  # the body is never read, yet the run completes
        listed = list(client.conversations.messages.list(conv.id, order="asc"))
        if len(listed) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [m.message_type for m in listed] == ["user_message", "assistant_message"]
    assert listed[1].content == "Nobody reads me"
    stream.close()


async def test_a_run_completes_when_the_client_never_reads_the_stream(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with rest_server(settings) as served:
        await sdk(never_read, served.base_url, fake_provider)


def cancel_and_resume(base_url: str, fake: FakeProvider) -> None:
    client = letta(base_url)
    conv = client.conversations.create(agent_id=client.agents.create(name="cancel").id)

    # resume: attach to the running run from a second request, then let it finish
    release = threading.Event()
    held = fake.enqueue("Worth the wait", wait_for=release)
    first = client.conversations.messages.create(conv.id, messages=[{"role": "user", "content": "One"}])
    assert held.started.wait(BOUND)
    resumed = client.conversations.messages.stream(conv.id)
    release.set()
    chunks = list(resumed)
    assert [c.content for c in chunks if isinstance(c, AssistantMessage)] == ["Worth the wait"]
    assert chunks[-2].stop_reason == "end_turn"
    first.close()

    # cancel: the running run ends cancelled, its input stays in history marked is_err
    never = threading.Event()
    held = fake.enqueue("never sent", wait_for=never)
    stream = client.conversations.messages.create(conv.id, messages=[{"role": "user", "content": "Two"}])
    assert held.started.wait(BOUND)
    cancelled = client.conversations.cancel(conv.id)
    assert list(cancelled.values()) == ["cancelled"]
    chunks = list(stream)
    assert isinstance(chunks[-2], LettaStopReason) and chunks[-2].stop_reason == "cancelled"
    assert not any(isinstance(c, AssistantMessage) for c in chunks)
    history = list(client.conversations.messages.list(conv.id, order="asc"))
    assert [(m.message_type, m.is_err) for m in history][-1] == ("user_message", True)
    never.set()


async def test_cancel_stops_the_run_and_stream_resumes_a_running_one(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with rest_server(settings) as served:
        await sdk(cancel_and_resume, served.base_url, fake_provider)


async def test_streaming_false_answers_letta_response_json_and_type_filters_apply(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with rest_server(settings) as served:
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=BOUND) as http:
            agent = (await http.post("/v1/agents/", json={"name": "json"})).json()
            conv = (await http.post("/v1/conversations/", params={"agent_id": agent["id"]}, json={})).json()
            path = f"/v1/conversations/{conv['id']}/messages"
            fake_provider.enqueue("Plain JSON", reasoning="thinking")
            r = await http.post(path, json={"input": "Answer in JSON", "streaming": False})
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            parsed = LettaResponse.model_validate(r.json())  # the SDK's own model, strictly
            assert [m.message_type for m in parsed.messages] == ["reasoning_message", "assistant_message"]
            assert parsed.stop_reason.stop_reason == "end_turn" and parsed.usage.total_tokens > 0

            fake_provider.enqueue("Only this", reasoning="hidden")
            body = {
                "messages": [{"role": "user", "content": "Filter"}],
                "stream_tokens": True,
                "include_return_message_types": ["assistant_message"],
            }
            r = await http.post(path, json=body)
            data = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            assert {d["message_type"] for d in data} == {"assistant_message", "stop_reason", "usage_statistics"}

            listed = (
                await http.get(
                    path,
                    params=[
                        ("include_return_message_types", "user_message"),
                        ("include_return_message_types", "assistant_message"),
                    ],
                )
            ).json()
            assert [m["message_type"] for m in listed] == ["assistant_message", "user_message"] * 2

            r = await http.post(path, json={"messages": [{"role": "user", "content": ""}]})
            assert r.status_code == 422 and "messages[0].content" in r.json()["detail"]
            assert r.headers["x-should-retry"] == "false"
            r = await http.post(path, json={"messages": [{"role": "user", "content": "x"}], "override_model": "gpt"})
            assert r.status_code == 422 and "override_model" in r.json()["detail"]
            r = await http.post(path, json={})
            assert r.status_code == 422 and "messages" in r.json()["detail"]
            r = await http.post("/v1/conversations/conv-nope/messages", json={"input": "hi"})
            assert r.status_code == 404
