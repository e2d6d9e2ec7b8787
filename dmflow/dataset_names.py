"""A dataset's one spelling: runs are keyed by it (one unfinished run per dataset).

Kept apart from the chunk source so the CLI can use it without loading numpy."""

from __future__ import annotations

from pathlib import Path


def canonical_dataset(dataset: str) -> str:
    """The one spelling of a dataset, which identifies its runs (one unfinished run per
    dataset): a local path absolute, with links and `..` resolved and no trailing slash;
    a remote one (hub://org/name) without trailing slashes or surrounding spaces."""
    text = dataset.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        return f"{scheme.lower()}://{rest.rstrip('/')}"
    return str(Path(text).expanduser().resolve())
