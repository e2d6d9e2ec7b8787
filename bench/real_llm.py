"""Benchmark: questions written by a real language model, and what they do to recall.

Generates once with the `openai` generator against a real OpenAI-compatible server
(a small self-hosted model: see the README's Training section for llama.cpp serving
SmolLM2-135M), then trains the local Deep Memory adapter on the same pairs with the
hashing embedder and, when installed, all-MiniLM-L6-v2, beside the local
generator's pairs for the same chunks. Prints recall@1/10/100 before -> after on
each set's held-out questions, what the cleaning dropped and why, tokens per second
and wall time. Not run in CI: it needs the model server.

    DMFLOW_LLM_BASE_URL=http://127.0.0.1:18555/v1 DMFLOW_LLM_API_KEY=none \\
    DMFLOW_LLM_MODEL=smollm2 DMFLOW_LLM_CONCURRENCY=2 \\
      python -m bench.real_llm --prompt one_question --questions 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import bench_environment
from bench.recall_models import RECALL_KS, minilm
from bench.training_local import pairs_of, train
from dmflow.embedding import Embedder, HashingEmbedder
from dmflow.models import RunUsage, TrainingPair
from dmflow.sample import build_sample_dataset

LEASE = ("bench", os.getpid(), None)


def generate_with_llm(
    dataset: Path, prompt: str, questions: int, max_pairs: int
) -> tuple[Any, list, dict]:  # type: ignore[type-arg]
    from dmflow.database import open_store
    from dmflow.phases.generation import generate
    from dmflow.phases.steps import DirectSteps
    from dmflow.settings import Settings
    from dmflow.status import Phase

    settings = Settings()
    store = open_store(settings)
    params = {
        "generator": "openai",
        "prompt": prompt,
        "questions_per_chunk": questions,
        "max_pairs": max_pairs,
        "batch_size": 16,
    }
    run = store.create_run(str(dataset), params=params)
    run = store.enter_phase(run.id, Phase.GENERATION, attempt=0, flow_run_id=None, lease=LEASE)
    started = time.perf_counter()
    run = asyncio.run(generate(run, store, settings, DirectSteps()))
    elapsed = time.perf_counter() - started
    pairs = [pair for page in store.iter_pairs(run.id) for pair in page]
    facts = {
        "seconds": elapsed,
        "usage": run.usage.model_dump(),
        "skipped": store.skipped_reasons(run.id),
        "done": run.processed_chunks - sum(store.skipped_reasons(run.id).values()),
        "chunks": run.processed_chunks,
    }
    return run, pairs, facts


def recall_row(label: str, metrics: dict[str, Any]) -> str:
    before, after = metrics["before"], metrics["after"]
    cells = [
        f"{before[k]:.3f} -> {after[k]:.3f} ({100 * (after[k] - before[k]):+.1f})"
        for k in RECALL_KS
    ]
    trained = f"{metrics['train_pairs']} / {metrics['eval_pairs']}"
    return f"| {label} | {trained} | " + " | ".join(cells) + " |"


def report_generation(facts: dict[str, Any], pairs: list[TrainingPair], prompt: str) -> None:
    usage, seconds = facts["usage"], facts["seconds"]
    tokens = usage.get("completion_tokens", 0)
    where = f"{os.environ.get('DMFLOW_LLM_MODEL')} at {os.environ.get('DMFLOW_LLM_BASE_URL')}"
    print(f"generation: {where}, prompt {prompt}")
    print(
        f"  {facts['chunks']} chunks in {seconds / 60:.1f} min: {facts['done']} done, "
        f"{sum(facts['skipped'].values())} skipped; {len(pairs)} pairs; "
        f"{int(usage.get('requests', 0))} requests, {int(usage.get('retries', 0))} retries; "
        f"{int(usage.get('prompt_tokens', 0))} prompt + {int(tokens)} completion tokens "
        f"({tokens / seconds:.1f} completion tokens/s)"
    )
    skipped = ", ".join(f"{reason}: {n}" for reason, n in facts["skipped"].items())
    print(f"  skipped: {skipped or 'none'}")
    print(f"  replies with no question in them: {int(usage.get('replies_malformed', 0))}")
    dropped = RunUsage.model_validate(usage).dropped
    listed = ", ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items()))
    print(f"  questions dropped by the cleaning: {listed or 'none'}")
    print("  e.g. " + " | ".join(sorted({p.question_text for p in pairs})[:5]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", default="one_question", choices=["list", "one_question"])
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument(
        "--pairs", type=Path, help="keep the generated pairs here; reuse them if it exists"
    )
    parser.add_argument("--large", action="store_true", help="the large sample corpus")
    parser.add_argument(
        "--max-pairs", type=int, default=100_000, help="a spread sample of the corpus"
    )
    args = parser.parse_args()
    with bench_environment() as root:
        hashing = root / "sample"
        build_sample_dataset(hashing, large=args.large)
        if args.pairs and args.pairs.exists():
            saved = json.loads(args.pairs.read_text())
            llm_pairs = [TrainingPair.model_validate(p) for p in saved["pairs"]]
            facts = saved["facts"]
        else:
            _, llm_pairs, facts = generate_with_llm(
                hashing, args.prompt, args.questions, args.max_pairs
            )
            if args.pairs:
                facts["skipped"] = dict(facts["skipped"])
                args.pairs.write_text(
                    json.dumps({"pairs": [p.model_dump() for p in llm_pairs], "facts": facts})
                )
        report_generation(facts, llm_pairs, args.prompt)

        local_pairs = pairs_of(hashing)
        if args.max_pairs < 100_000:  # a sample: the local generator on the same chunks
            asked = {pair.chunk_id for pair in llm_pairs}
            local_pairs = [pair for pair in local_pairs if pair.chunk_id in asked]
        sets: list[tuple[str, list[TrainingPair]]] = [
            ("local generator", local_pairs),
            (f"{args.prompt} LLM", llm_pairs),
        ]
        embedders: list[tuple[str, Path, Embedder]] = [("hashing-512", hashing, HashingEmbedder())]
        model = minilm()
        if model is not None:
            other = root / "minilm"
            build_sample_dataset(other, embedder=model, large=args.large)
            embedders.append(("MiniLM-L6", other, model))
        print()
        print("| embedder, questions | trained / held out | recall@1 | recall@10 | recall@100 |")
        print("| --- | --- | --- | --- | --- |")
        for name, dataset, _ in embedders:
            for label, pairs in sets:
                _, metrics = train(dataset, pairs, root / "jobs")
                print(recall_row(f"{name}, {label}", metrics))
        if model is None:
            print("(all-MiniLM-L6-v2 is not installed: see bench.recall_models for how)")


if __name__ == "__main__":
    main()
