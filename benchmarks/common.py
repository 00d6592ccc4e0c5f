"""Timing and peak-memory helpers for the benchmarks (not tests)."""
from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Measure:
    seconds: float = 0.0
    peak_rss_gb: float = 0.0
    start_rss_gb: float = 0.0


@contextmanager
def measured(interval: float = 0.02, tree: bool = False) -> Iterator[Measure]:
    """Wall time and the process's peak resident memory while the block runs (sampled); with `tree`, that of
    the process and its children together (e.g. Spark's JVM)."""
    process, result, done = psutil.Process(), Measure(), threading.Event()

    def rss() -> int:
        if not tree:
            return process.memory_info().rss
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    peak = [rss()]
    result.start_rss_gb = peak[0] / 2**30

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        result.peak_rss_gb = max(peak[0], rss()) / 2**30


def dataset(name: str, ml100k: str):
    """The prepared tables of a benchmark data set: "ml-100k" (no k-core, the comparable setup) or a synthetic
    preset's name."""
    from kwai_assets.core.pipeline import prepared
    from kwai_assets.sources import MovieLensSource, SyntheticSource

    return prepared(MovieLensSource(ml100k), k=1) if name == "ml-100k" else prepared(SyntheticSource(name))


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table, ready for the README."""
    def fmt(v: object) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def best_validated(history: list[dict]) -> dict:
    """The epoch of a training history with the highest validation NDCG@20 (the weights early stopping kept)."""
    return max((h for h in history if "val_ndcg_at_20" in h), key=lambda h: h["val_ndcg_at_20"])


def settings_parser(doc: str, config: str) -> argparse.ArgumentParser:
    """The command line of a settings grid: JSON objects of `config`'s fields, where ml-100k is, the torch
    threads, and whether to read test; add the script's own options, then `parse_settings`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", default=["{}"], help=f"JSON objects of {config} fields")
    parser.add_argument("--ml100k", default=os.environ.get("KWAI_ML100K", str(Path.home() / ".cache/kwai/ml-100k")))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--test", action="store_true", help="also read test NDCG@20")
    return parser


def parse_settings(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed arguments, torch's CPU threads set."""
    import torch

    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
