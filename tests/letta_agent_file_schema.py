"""A re-statement, in our own words, of what Letta's importer requires of an agent file: the
required parts of `AgentFileSchema` and the models it is built from in Letta's archived server
(letta/schemas/agent_file.py, agent.py `CreateAgent`, llm_config.py `LLMConfig`, block.py
`CreateBlock`, message.py `MessageCreate` / `ToolReturn`, letta_message_content.py, group.py),
`letta` itself not being installable here. Types, required fields, enums and validators that would
make Letta refuse a file are kept; optional fields Letta fills with defaults are left out (extra keys
are accepted, as Letta's models accept them)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_OPEN = ConfigDict(extra="allow")

ProviderType = Literal[
    "openai",
    "anthropic",
    "google_ai",
    "google_vertex",
    "azure",
    "groq",
    "ollama",
    "webui",
    "webui-legacy",
    "lmstudio",
    "lmstudio-legacy",
    "lmstudio-chatcompletions",
    "llamacpp",
    "koboldcpp",
    "vllm",
    "hugging-face",
    "minimax",
    "mistral",
    "together",
    "bedrock",
    "deepseek",
    "xai",
    "zai",
    "zai_coding",
    "baseten",
    "fireworks",
    "openrouter",
    "chatgpt_oauth",
]
Role = Literal["assistant", "user", "tool", "function", "system", "approval"]


class LlmConfig(BaseModel):
    model_config = _OPEN
    model: str
    model_endpoint_type: ProviderType
    context_window: int
    handle: str | None = None


class Text(BaseModel):
    model_config = _OPEN
    type: Literal["text"] = "text"
    text: str


class Reasoning(BaseModel):
    model_config = _OPEN
    type: Literal["reasoning"]
    is_native: bool
    reasoning: str


class OtherPart(BaseModel):
    """Image, tool call/return, redacted or omitted reasoning parts: present in real files, never in ours."""

    model_config = _OPEN
    type: Literal[
        "image", "tool_call", "tool_return", "redacted_reasoning", "omitted_reasoning", "summarized_reasoning"
    ]


Part = Annotated[Text | Reasoning | OtherPart, Field(discriminator="type")]


class Function(BaseModel):
    model_config = _OPEN
    name: str
    arguments: str


class ToolCall(BaseModel):
    """OpenAI's ChatCompletionMessageToolCall."""

    model_config = _OPEN
    id: str
    type: Literal["function"]
    function: Function


class ToolReturn(BaseModel):
    model_config = _OPEN
    status: Literal["success", "error"]
    tool_call_id: Any = None
    func_response: str | list[Any] | None = None


class Message(BaseModel):
    model_config = _OPEN
    id: str
    role: Role
    content: str | list[Part]
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    tool_returns: list[ToolReturn] | None = None
    created_at: datetime


class Agent(BaseModel):
    model_config = _OPEN
    id: str
    name: str
    system: str | None = None
    llm_config: LlmConfig | None = None
    model: str | None = None
    block_ids: list[str] | None = None
    tool_ids: list[str] | None = None
    in_context_message_ids: list[str] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    group_ids: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:  # Letta refuses filesystem-unsafe characters in a name
        if name and not re.match(r"^[\w '\-]+$", name, re.UNICODE):
            raise ValueError(f"agent name {name!r} has characters Letta refuses")
        return name

    @field_validator("model")
    @classmethod
    def _model(cls, model: str | None) -> str | None:
        if model and ("/" not in model or not all(model.split("/", 1))):
            raise ValueError("the model handle should be provider/model-name")
        return model


class Block(BaseModel):
    model_config = _OPEN
    id: str
    label: str
    value: str
    limit: int = 20_000
    read_only: bool = False


class Group(BaseModel):
    model_config = _OPEN
    id: str
    agent_ids: list[str]


class AgentFile(BaseModel):
    """AgentFileSchema: the list fields without defaults are required."""

    model_config = _OPEN
    agents: list[Agent]
    groups: list[Group]
    blocks: list[Block]
    files: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    mcp_servers: list[dict[str, Any]]
    skills: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
