"""The HTTP guards against the real server: bearer auth, Host/Origin (DNS rebinding), body size,
malformed JSON and unknown methods, each followed by proof that the server still serves."""

from __future__ import annotations

import httpx
import pytest
from http_helpers import mcp_client, running_http_server
from test_http_mcp import ACCEPT, INIT, rpc_body

from mcp_server_conversations.config import Settings
from mcp_server_conversations.http.app import bind_problem
from mcp_server_conversations.http.security import HostPolicy, is_loopback

TOKEN = "s3cret-token"
pytestmark = pytest.mark.above_storage("the guards answer before any storage is reached")


async def initialize_ok(http: httpx.AsyncClient, base: str, headers: dict[str, str] | None = None) -> None:
    r = await http.post(f"{base}/mcp", json=INIT, headers={**ACCEPT, **(headers or {})})
    assert r.status_code == 200, r.text
    assert rpc_body(r)["result"]["protocolVersion"] == "2025-11-25"


async def test_bearer_token_required_except_healthz(settings: Settings) -> None:
    s = settings.model_copy(update={"auth_token": TOKEN})
    async with running_http_server(s) as base, httpx.AsyncClient() as http:
        for path in ("/mcp", "/v1/agents", "/v1/conversations/"):
            missing = await http.post(f"{base}{path}", json=INIT, headers=ACCEPT)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong = await http.post(f"{base}{path}", json=INIT, headers={**ACCEPT, "Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        # A token that merely starts like the right one, or another scheme, is still wrong.
        for bad in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN):
            r = await http.post(f"{base}/mcp", json=INIT, headers={**ACCEPT, "Authorization": bad})
            assert r.status_code == 401, bad
        assert (await http.get(f"{base}/healthz")).status_code == 200
        await initialize_ok(http, base, {"Authorization": f"Bearer {TOKEN}"})
        for mode in ("auto", "legacy"):
            async with mcp_client(f"{base}/mcp", token=TOKEN, mode=mode) as client:
                assert not (await client.call_tool("create_agent", {"name": mode})).is_error
        with pytest.raises(BaseExceptionGroup) as refused:  # the SDK wraps the 401 in task-group errors
            async with mcp_client(f"{base}/mcp", token="wrong") as client:
                await client.list_tools()
        assert "unauthorized: wrong bearer token" in str(flatten(refused.value))


def flatten(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in flatten(inner)]
    return [error]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example.com"}, 421),
        ({"Host": "evil.example.com:80"}, 421),
        ({"Host": "127.0.0.1.evil.example.com:80"}, 421),
        ({"Origin": "http://evil.example.com"}, 403),
        ({"Origin": "http://localhost.evil.example.com:5173"}, 403),
        ({"Origin": "https://127.0.0.1:9"}, 403),
        ({"Host": "localhost:8283"}, 200),
        ({"Origin": "http://localhost:5173"}, 200),
    ],
)
async def test_host_and_origin_are_checked(settings: Settings, headers: dict[str, str], status: int) -> None:
    async with running_http_server(settings) as base, httpx.AsyncClient() as http:
        for path in ("/mcp", "/healthz"):
            if path == "/mcp":
                r = await http.post(f"{base}{path}", json=INIT, headers={**ACCEPT, **headers})
                assert r.status_code == status, (path, r.text)
            else:  # a health probe reads no data: neither Host nor Origin is checked there
                r = await http.get(f"{base}{path}", headers=headers)
                assert r.status_code == 200, (path, r.text)
        await initialize_ok(http, base)  # still serving


async def test_allowed_hosts_and_origins_widen_the_defaults(settings: Settings) -> None:
    s = settings.model_copy(
        update={
            "allowed_hosts": ["mcp.example.com", "proxy.internal:*"],
            "allowed_origins": ["https://app.example.com"],
        }
    )
    async with running_http_server(s) as base, httpx.AsyncClient() as http:
        await initialize_ok(http, base, {"Host": "mcp.example.com"})
        await initialize_ok(http, base, {"Host": "proxy.internal:8443"})
        await initialize_ok(http, base, {"Origin": "https://app.example.com"})
        await initialize_ok(http, base)  # loopback still fine
        r = await http.post(f"{base}/mcp", json=INIT, headers={**ACCEPT, "Host": "other.example.com"})
        assert r.status_code == 421 and "--allowed-hosts" in r.json()["error"]["message"]
        r = await http.post(f"{base}/mcp", json=INIT, headers={**ACCEPT, "Origin": "https://evil.example.com"})
        assert r.status_code == 403 and "--allowed-origins" in r.json()["error"]["message"]
        # REST paths answer in Letta's error shape.
        r = await http.get(f"{base}/v1/agents", headers={"Host": "other.example.com"})
        assert r.status_code == 421 and "--allowed-hosts" in r.json()["detail"]


async def test_oversize_bodies_get_413_and_the_server_goes_on(settings: Settings) -> None:
    s = settings.model_copy(update={"max_body_bytes": 2048})
    async with running_http_server(s) as base, httpx.AsyncClient() as http:
        big = {**INIT, "params": {**INIT["params"], "pad": "x" * 4096}}
        for path in ("/mcp", "/v1/agents"):
            r = await http.post(f"{base}{path}", json=big, headers=ACCEPT)
            assert r.status_code == 413, path
            assert "2048" in r.text

            async def chunks():  # no Content-Length: the bytes are counted as they arrive
                for _ in range(8):
                    yield b"x" * 512

            r = await http.post(f"{base}{path}", content=chunks(), headers=ACCEPT)
            assert r.status_code == 413, path
        await initialize_ok(http, base)  # a body under the limit is fine


@pytest.mark.parametrize("stateless", [False, True])
async def test_malformed_json_and_unknown_methods(settings: Settings, stateless: bool) -> None:
    s = settings.model_copy(update={"stateless": stateless})
    async with running_http_server(s) as base, httpx.AsyncClient() as http:
        r = await http.post(f"{base}/mcp", content=b'{"jsonrpc": "2.0", "id": 1, "method": ', headers=ACCEPT)
        assert r.status_code == 400 and r.json()["error"]["code"] == -32700
        init = await http.post(f"{base}/mcp", json=INIT, headers=ACCEPT)
        session = {"mcp-protocol-version": "2025-11-25"}
        if not stateless:
            session["mcp-session-id"] = init.headers["mcp-session-id"]
        notified = await http.post(
            f"{base}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers={**ACCEPT, **session}
        )
        assert notified.status_code == 202
        r = await http.post(f"{base}/mcp", content=b"[{]", headers={**ACCEPT, **session})
        assert r.status_code == 400 and r.json()["error"]["code"] == -32700
        r = await http.post(
            f"{base}/mcp", json={"jsonrpc": "2.0", "id": 7, "method": "no/such"}, headers={**ACCEPT, **session}
        )
        assert rpc_body(r)["error"]["code"] == -32601
        r = await http.post(
            f"{base}/mcp", json={"jsonrpc": "2.0", "id": 8, "method": "tools/list"}, headers={**ACCEPT, **session}
        )
        assert "create_agent" in {t["name"] for t in rpc_body(r)["result"]["tools"]}
        async with mcp_client(f"{base}/mcp") as client:  # and a fresh client still connects
            assert not (await client.call_tool("list_agents", {})).is_error


def test_bind_policy() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("myhost")
    assert bind_problem(Settings(host="127.0.0.1")) is None
    assert "--auth-token" in (bind_problem(Settings(host="0.0.0.0")) or "")
    assert "--auth-token" in (bind_problem(Settings(host="0.0.0.0", auth_token="  ")) or "")
    assert bind_problem(Settings(host="0.0.0.0", auth_token="t")) is None
    assert bind_problem(Settings(host="0.0.0.0", allow_unauthenticated=True)) is None


def test_host_policy_for_binds() -> None:
    loop = HostPolicy.for_bind("127.0.0.1", [], [])
    assert loop.host_ok("127.0.0.1:8283") and loop.host_ok("localhost:1") and loop.host_ok("[::1]:8283")
    assert not loop.host_ok("evil.com") and not loop.host_ok(None) and not loop.host_ok("127.0.0.1:80x")
    specific = HostPolicy.for_bind("10.0.0.5", [], [])
    assert specific.host_ok("10.0.0.5:8283") and specific.host_ok("10.0.0.5") and not specific.host_ok("evil.com")
    anywhere = HostPolicy.for_bind("0.0.0.0", [], [])
    assert anywhere.host_ok("whatever.example:1")
    assert not anywhere.origin_ok("http://evil.example.com") and anywhere.origin_ok(None)
    pinned = HostPolicy.for_bind("0.0.0.0", ["mcp.example.com"], ["https://app.example.com"])
    assert pinned.host_ok("mcp.example.com") and not pinned.host_ok("evil.com")
    assert pinned.origin_ok("https://app.example.com") and not pinned.origin_ok("https://app.example.com.evil")
