"""Where raw data comes from. No Dagster here: sources are plain objects."""
from __future__ import annotations

from kwai_assets.sources.base import Source
from kwai_assets.sources.files import FilesSource
from kwai_assets.sources.movielens import MovieLensSource
from kwai_assets.sources.synthetic import SyntheticSource

KINDS = ("synthetic", "files", "movielens")


def open_source(kind: str, *, preset: str = "small", seed: int = 7, start_date: str = "2026-01-01",
                data_dir: str = "") -> Source:
    if kind == "synthetic":
        return SyntheticSource(preset=preset, seed=seed, start_date=start_date)
    if kind == "files":
        return FilesSource(data_dir)
    if kind == "movielens":
        return MovieLensSource(data_dir)
    raise ValueError(f"unknown source {kind!r}; choose one of {', '.join(KINDS)}")
