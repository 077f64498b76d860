"""Cost of memory embeddings: all-MiniLM-L6-v2 in numpy (Populace) against sentence-transformers.

    .venv/bin/python benchmarks/embeddings.py [--texts 1000] [--batch 64]

Times ``populace.simulator.llm.minilm.MiniLM.encode`` on social-memory-like texts (seeded),
reports ms per text and per token, and, when sentence-transformers (with PyTorch) is importable
in the same environment, times it on the same texts and reports the largest difference between
the two sets of vectors.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from populace.simulator.llm.minilm import MiniLM, model_dir

TOPICS = ["climate", "vaccines", "football", "the election", "taxes", "housing", "AI"]
VERBS = ["liked", "ignored", "reposted", "disagreed with", "commented on"]


def texts(n: int, seed: int) -> list[str]:
    """Memory texts of the kind the social scenario stores (5-45 words)."""
    rng = random.Random(seed)
    words = ["people", "should", "policy", "new", "today", "think", "really", "never",
             "great", "bad", "city"]
    return [f"I read a post by user {rng.randrange(10**6)} about {rng.choice(TOPICS)}: \""
            + " ".join(rng.choice(words) for _ in range(rng.randrange(5, 45)))
            + f"\" and I {rng.choice(VERBS)} it." for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sample = texts(args.texts, args.seed)
    model = MiniLM(batch_size=args.batch)
    tokens = sum(len(e.ids) for e in model.tokenizer.encode_batch(sample))
    model.encode(sample[:8])  # warm-up
    t0 = time.perf_counter()
    ours = model.encode(sample)
    dt = time.perf_counter() - t0
    print(f"{args.texts} texts, {tokens} tokens ({tokens / args.texts:.1f} per text)")
    print(f"populace numpy MiniLM: {dt:.2f} s, {1e3 * dt / args.texts:.2f} ms/text, "
          f"{1e3 * dt / tokens:.3f} ms/token")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers not installed: no comparison")
        return
    st = SentenceTransformer(str(model_dir()), device="cpu")
    st.encode(sample[:8])
    t0 = time.perf_counter()
    theirs = st.encode(sample, batch_size=args.batch, normalize_embeddings=True)
    dt_st = time.perf_counter() - t0
    print(f"sentence-transformers: {dt_st:.2f} s, {1e3 * dt_st / args.texts:.2f} ms/text, "
          f"{1e3 * dt_st / tokens:.3f} ms/token; max |difference| "
          f"{np.abs(ours - theirs).max():.2e}")


if __name__ == "__main__":
    main()
