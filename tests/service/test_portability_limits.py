"""Import limits checked before anything is read further or stored: a message count over the limit and
JSON text over the size limit are refused with errors naming them."""

from __future__ import annotations

import pytest

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import ValidationError
from mcp_server_conversations.service.export_format import FORMAT_VERSION, MAX_IMPORT_CHARS, MAX_IMPORT_MESSAGES


async def test_too_many_messages_and_too_much_text_are_refused(settings: Settings) -> None:
    async with open_app(settings) as app:
        message = {"id": "m", "message_type": "user_message", "role": "user", "content": "hi", "created_at": "2026"}
        data = {
            "format_version": FORMAT_VERSION,
            "conversation": {},
            "agent": {"id": "agent-x", "name": "x", "system": ""},
            "blocks": [],
            "messages": [{**message, "id": f"m{i}"} for i in range(MAX_IMPORT_MESSAGES + 1)],
            "context_message_ids": [],
            "runs": [],
        }
        with pytest.raises(ValidationError, match=f"data.messages: List should have at most {MAX_IMPORT_MESSAGES}"):
            await app.portability.import_conversation(data)
        with pytest.raises(ValidationError, match="over the import limit"):
            await app.portability.import_conversation(" " * (MAX_IMPORT_CHARS + 1))
        with pytest.raises(ValidationError, match="over the import limit"):
            await app.portability.import_agent(" " * (MAX_IMPORT_CHARS + 1))
        assert (await app.service.list_agents()).agents == []
