"""The model registry part of ``gitml import mlflow`` (filled in below)."""

from __future__ import annotations


def import_registry(mc, client, summary, *, runs: set[str], dry_run: bool) -> None:
    return None
