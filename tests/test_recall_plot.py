"""The README's recall plot is drawn from a run's metrics, every k and both lines."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from docs.recall_plot import recall_svg

SVG = "{http://www.w3.org/2000/svg}"
METRICS = {
    "before": {"recall@1": 0.114, "recall@10": 0.514, "recall@100": 0.893},
    "after": {"recall@1": 0.207, "recall@10": 0.657, "recall@100": 0.936},
    "eval_pairs": 140,
    "train_pairs": 1116,
    "embedder": "hashing-512",
}


def test_the_plot_has_both_lines_and_every_value() -> None:
    root = ET.fromstring(recall_svg(METRICS))
    lines = root.findall(f"{SVG}polyline")
    assert [len(line.get("points", "").split()) for line in lines] == [3, 3]
    labels = [text.text for text in root.iter(f"{SVG}text")]
    for value in ("0.11", "0.51", "0.89", "0.21", "0.66", "0.94"):
        assert value in labels
    assert "140 held-out questions, 1116 trained, embedder hashing-512" in labels
    # after training is drawn above before training wherever it is higher
    before, after = (
        [float(point.split(",")[1]) for point in line.get("points", "").split()] for line in lines
    )
    assert all(a < b for a, b in zip(after, before, strict=True))  # SVG y grows downwards


def test_a_trainer_without_after_figures_draws_only_the_baseline() -> None:
    root = ET.fromstring(recall_svg({"before": METRICS["before"], "after": {}}))
    assert len(root.findall(f"{SVG}polyline")) == 1
