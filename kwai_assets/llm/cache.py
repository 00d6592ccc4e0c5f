"""Generations cached by hash(backend identity, prompt), checkpointed one batch per file.

A re-run only asks the model for prompts it has not answered; a crash keeps
every batch already written. Files are written atomically and merged into
one by `compact()` after a run that finished.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import duckdb
import pandas as pd

from kwai_assets.core.sql import frame
from kwai_assets.io.warehouse import write_parquet_atomic

COLUMNS = ["key", "text", "tokens_in", "tokens_out"]


class GenerationCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @staticmethod
    def key(identity: str, prompt: str) -> str:
        return hashlib.sha256(f"{identity}\x00{prompt}".encode()).hexdigest()

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("*.parquet")) if self.directory.is_dir() else []

    @staticmethod
    def _read(files: list[Path], keys: list[str] | None = None) -> pd.DataFrame:
        """One row per key from `files`, restricted to `keys` when given."""
        with duckdb.connect() as con:
            con.register("wanted", pd.DataFrame({"key": keys or []}))
            paths = ", ".join(f"'{f}'" for f in files)
            where = "WHERE key IN (SELECT key FROM wanted)" if keys is not None else ""
            return frame(con, f"SELECT DISTINCT ON (key) {', '.join(COLUMNS)} FROM read_parquet([{paths}]) "
                              f"{where} ORDER BY key")

    def get(self, keys: list[str]) -> pd.DataFrame:
        """Cached rows for `keys` (those found), one per key."""
        files = self._files()
        if not files or not keys:
            return pd.DataFrame({c: [] for c in COLUMNS})
        return self._read(files, keys)

    def put(self, rows: pd.DataFrame) -> None:
        write_parquet_atomic(rows[COLUMNS], self.directory / f"batch-{uuid.uuid4().hex}.parquet")

    def compact(self) -> None:
        """Merge every file into one (the files merged are removed only after the merge is written)."""
        files = self._files()
        if len(files) <= 1:
            return
        write_parquet_atomic(self._read(files), self.directory / f"compact-{uuid.uuid4().hex}.parquet")
        for f in files:
            f.unlink()
