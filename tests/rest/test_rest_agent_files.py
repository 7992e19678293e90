"""Letta agent files over REST with Letta's SDK (`agents.import_file`, `agents.export_file`), the
streamed conversation export, and export/import through the MCP client over HTTP in both eras."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import httpx
import letta_client
import pytest
from fake_provider import FakeProvider
from http_helpers import mcp_client
from letta_agent_file_schema import AgentFile
from rest_helpers import TOKEN, letta, rest_server, sdk

from mcp_server_conversations.config import Settings

FILES = Path(__file__).parent.parent / "data" / "agent-files"


def import_and_export(base_url: str) -> dict:
    client = letta(base_url)
    with open(FILES / "ezra.af", "rb") as f:  # as Letta's docs show it: an open file
        imported = client.agents.import_file(file=f)
    (agent_id,) = imported.agent_ids
    extra = imported.model_extra or {}
    assert len(extra["raised_limits"]) == 3 and "system//references/lettabot" in extra["skipped"]["blocks"]
    agent = client.agents.retrieve(agent_id)
    assert agent.name == "ezra-super"
    labels = {b.label for b in agent.memory.blocks}
    assert "reference/api-endpoints" in labels or "system/persona" in labels
    label = next(x for x in sorted(labels) if "/" in x)
    block = client.agents.blocks.retrieve(label, agent_id=agent_id)  # a label with '/' in the path
    assert block.label == label
    updated = client.agents.blocks.update(label, agent_id=agent_id, value="kept whole")
    assert updated.value == "kept whole"

    legacy = gzip.decompress((FILES / "lettabot-builder.af.gz").read_bytes())
    renamed = client.agents.import_file(file=("builder.af", io.BytesIO(legacy)), name="Builder")
    builder = client.agents.retrieve(renamed.agent_ids[0])
    assert builder.name == "Builder"
    assert (renamed.model_extra or {})["skipped"]["agents"] == ["Nameless Agent-sleeptime (agent-1)"]

    exported = client.agents.export_file(agent_id)
    data = json.loads(exported) if isinstance(exported, str) else exported
    AgentFile.model_validate(data)
    assert {b["label"] for b in data["blocks"]} == labels
    again = client.agents.import_file(file=("ezra-export.af", io.BytesIO(json.dumps(data).encode())))
    copy = client.agents.retrieve(again.agent_ids[0])
    assert {b.label for b in copy.memory.blocks} == labels
    assert (again.model_extra or {})["raised_limits"] == []

    twice = json.dumps(json.dumps(data)).encode()  # JSON-encoded twice, as Letta's route accepts
    assert client.agents.import_file(file=("twice.af", io.BytesIO(twice))).agent_ids

    with pytest.raises(letta_client.UnprocessableEntityError) as legacy_error:
        client.agents.import_file(
            file=("old.af", io.BytesIO(gzip.decompress((FILES / "memgpt_agent_with_convo.legacy.af.gz").read_bytes())))
        )
    assert "legacy agent file layout" in legacy_error.value.body["detail"]
    with pytest.raises(letta_client.UnprocessableEntityError) as broken:
        client.agents.import_file(file=("broken.af", io.BytesIO(b"{not json")))
    assert "not valid JSON" in broken.value.body["detail"]
    with pytest.raises(letta_client.NotFoundError):
        client.agents.export_file("agent-00000000-0000-0000-0000-000000000000")
    return {"agent_id": agent_id}


async def test_agent_files_through_letta_sdk(settings: Settings) -> None:
    async with rest_server(settings) as served:
        await sdk(import_and_export, served.base_url)
        async with httpx.AsyncClient(base_url=served.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            bare = await http.post("/v1/agents/import", json={"file": "no"})
            assert bare.status_code == 422 and "multipart" in bare.json()["detail"]
            missing = await http.post("/v1/agents/import", files={"other": ("x.af", b"{}")})
            assert missing.status_code == 422 and "named `file`" in missing.json()["detail"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_streamed_export_then_import_over_mcp_http(
    settings: Settings, fake_provider: FakeProvider, mode: str
) -> None:
    async with rest_server(settings) as served:
        async with mcp_client(served.mcp_url, token=TOKEN, mode=mode) as c:
            conv = await c.call_tool("create_conversation", {})
            conv_id = conv.structured_content["id"]
            fake_provider.enqueue("Kilns reach 1200 degrees.")
            sent = await c.call_tool("send_message", {"conversation_id": conv_id, "content": "How hot is a kiln?"})
            assert not sent.is_error, sent.content
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=served.base_url, headers=auth) as http:
                r = await http.get(f"/v1/conversations/{conv_id}/export")
                assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
                streamed = r.json()
                md = await http.get(f"/v1/conversations/{conv_id}/export", params={"format": "markdown"})
                assert md.headers["content-type"].startswith("text/markdown") and "How hot is a kiln?" in md.text
                missing = await http.get("/v1/conversations/conv-missing/export")
                assert missing.status_code == 404
            tool = await c.call_tool("export_conversation", {"conversation_id": conv_id})
            data = tool.structured_content["data"]
            assert {k: v for k, v in streamed.items() if k != "exported_at"} == {
                k: v for k, v in data.items() if k != "exported_at"
            }
            imported = await c.call_tool("import_conversation", {"data": streamed})
            assert not imported.is_error, imported.content
            assert imported.structured_content["messages"] == 2
            hits = await c.call_tool(
                "conversation_search",
                {"query": "kiln degrees", "conversation_id": imported.structured_content["conversation"]["id"]},
            )
            assert hits.structured_content["results"]
            af = await c.call_tool("import_agent", {"data": (FILES / "loop.af").read_text()})
            assert not af.is_error and af.structured_content["agent"]["name"] == "Loop"
