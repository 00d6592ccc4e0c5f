"""Training speed of the interest model and LightGCN on data shaped like the `large` preset, on CPU or CUDA.

Needs only torch, numpy, scipy and pandas and the pure `models/` code, so it
runs on a bare GPU machine (bf16 autocast on CUDA): the inputs are random
arrays with the shapes of `large` after k-core (87,511 users, 39,996 items,
1.94M train interactions, histories of 7 to 100 behaviours, mean 22), because
speed depends on shapes, not on what the ids mean.

Usage: python benchmarks/bench_train_gpu.py [--users 2048] [--cf-epochs 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
from kwai_assets.core.evaluation import EvalData  # noqa: E402
from kwai_assets.core.sequences import FEATURES, GAP_BUCKETS, Sequences  # noqa: E402
from kwai_assets.models.cf import CFConfig, train_cf  # noqa: E402
from kwai_assets.models.interest import InterestConfig, train_interest  # noqa: E402

USERS, ITEMS, CATEGORIES, TRAIN = 87_511, 39_996, 40, 1_940_594


def random_sequences(n: int, long_len: int = 100, short_len: int = 10, seed: int = 0) -> Sequences:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.geometric(1 / 16, n) + 6, 7, long_len)
    vocab = {"item": ITEMS, "category": CATEGORIES, "hour": 25, "weekday": 8, "weekend": 3, "event": 4,
             "gap": GAP_BUCKETS}

    def block(length: int, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = np.stack([rng.integers(1, size, (n, length)) for size in vocab.values()], axis=-1)
        keep = np.arange(length)[None, :] >= length - present[:, None]
        return features * keep[..., None], (rng.random((n, length)) * keep).astype(np.float32)

    n_short = np.maximum(1, np.round(lengths * 0.1)).astype(np.int64)
    long, long_time = block(long_len, np.minimum(lengths - n_short, long_len))
    short, short_time = block(short_len, np.minimum(n_short, short_len))
    full, full_time = block(long_len, lengths)
    assert long.shape[-1] == len(FEATURES)
    return Sequences(np.arange(1, n + 1), long, long_time, short, short_time, full, full_time, vocab, ["click"],
                     rng.integers(1, CATEGORIES, ITEMS))


def random_interactions(seed: int = 0) -> EvalData:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, ITEMS) ** 0.8
    users = rng.integers(1, USERS, TRAIN)
    items = rng.choice(np.arange(1, ITEMS), TRAIN, p=popularity / popularity.sum())
    train = sp.csr_matrix((np.ones(TRAIN, np.float32), (users, items)), shape=(USERS, ITEMS))
    train.sum_duplicates()
    train.data[:] = 1
    val_users = rng.integers(1, USERS, TRAIN // 7)
    val = sp.csr_matrix((np.ones(len(val_users), np.float32), (val_users, rng.integers(1, ITEMS, len(val_users)))),
                        shape=(USERS, ITEMS))
    return EvalData(train, val, val)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=2048, help="users of the interest epoch (all: 87511)")
    parser.add_argument("--cf-epochs", type=int, default=1)
    args = parser.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if dev == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    sequences = random_sequences(args.users)
    _, history = train_interest(sequences, InterestConfig(epochs=1))
    interest = history[0]["samples_per_s"]
    data = random_interactions()
    start = time.perf_counter()
    _, cf_history = train_cf(data, dataclasses.replace(CFConfig(), epochs=args.cf_epochs, eval_every=10**6))
    epoch_s = float(np.mean([h["epoch_s"] for h in cf_history]))
    print(f"\n| device | interest model samples/s ({args.users} users, default config) | "
          f"LightGCN epoch s (3 layers, dim 64, {data.train.nnz:,} interactions) | dtype |")
    print("|---|---|---|---|")
    print(f"| {name} | {interest:,.0f} | {epoch_s:,.1f} | {'bf16 autocast' if dev == 'cuda' else 'float32'} |")
    print(f"(total {time.perf_counter() - start:.0f} s for LightGCN incl. one validation)")


if __name__ == "__main__":
    main()
