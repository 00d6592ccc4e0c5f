"""Long-term interest model: training throughput, MoE load balancing, export to Redis.

1. Training samples/s of the default model on real sequences of a synthetic
   preset (`large` = 100k users), on the first `--users` users, one epoch.
2. Expert load per epoch for each balancing rule (bias at two rates, the
   notebook's share rule, none), full training on the `small` preset with
   early stopping on validation NDCG@20: the measurement behind the default.
   (Retrieval quality and the loss ablation: bench_interest_quality.py.)
3. Export of 100k 128-d user vectors to a real redis-server started here on a
   free loopback port (target < 5 s), and one read back.

Usage: python benchmarks/bench_interest.py [--preset large] [--users 4096] [--balance-preset small]
       [--balance-epochs N] [--parts export,throughput,balancing]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_validated, dataset, measured, table  # noqa: E402

from kwai_assets.core.evaluation import EvalData, evaluate  # noqa: E402
from kwai_assets.core.sequences import Sequences, behaviour_sequences  # noqa: E402
from kwai_assets.core.vectors import dot_product  # noqa: E402
from kwai_assets.io.online_store import OnlineStore  # noqa: E402
from kwai_assets.io.redis_server import local_redis  # noqa: E402
from kwai_assets.models.interest import InterestConfig, item_vectors, train_interest, user_vectors  # noqa: E402


def sequences_of(preset: str) -> tuple[Sequences, object]:
    """The preset's sequences at the asset's defaults (long_len 100, short_len 10), and its splits."""
    tables = dataset(preset, "")
    sizes = tables.sizes
    return behaviour_sequences(tables.splits, sizes["item"], sizes["category"]), tables.splits


def first_users(s: Sequences, n: int) -> Sequences:
    arrays = ("users", "long", "long_time", "short", "short_time", "full", "full_time", "n_short")
    return dataclasses.replace(s, **{k: getattr(s, k)[:n] for k in arrays})


def throughput(preset: str, users: int) -> None:
    s, _ = sequences_of(preset)
    sub = first_users(s, users)
    with measured() as m:
        _, history = train_interest(sub, InterestConfig(epochs=1))
    lengths = (s.full[..., 0] > 0).sum(1)
    print(f"\n## Training throughput, default model ({torch.get_num_threads()} CPU threads"
          f"{', ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''})\n")
    print(table(["preset", "users (all)", "users trained", "mean history", "samples/s", "epoch s", "peak GB"],
                [[preset, len(s.users), len(sub.users), float(lengths.mean()), history[0]["samples_per_s"],
                  m.seconds, m.peak_rss_gb]]))


def balancing(preset: str, epochs: int | None) -> None:
    s, splits = sequences_of(preset)
    data = EvalData.from_splits(splits)
    rows = []
    for label, changes in [("bias, rate 1e-2 (default)", {}), ("bias, rate 1e-3 (DeepSeek-V3)", {"bias_rate": 1e-3}),
                           ("share (notebook)", {"balance": "share"}), ("none", {"balance": "none"})]:
        config = dataclasses.replace(InterestConfig(), **changes, **({"epochs": epochs} if epochs else {}))
        model, history = train_interest(s, config, val=data)
        users = np.zeros((data.n_users, config.dim), np.float32)
        users[s.users] = user_vectors(model, s)
        ndcg = evaluate(dot_product(users, item_vectors(model)), data, ks=(20,))["ndcg", 20]
        best = best_validated(history)
        shown = history[:: max(1, len(history) // 8)]
        rows.append([label, " ".join(f"{h['load_max_over_mean']:.2f}" for h in shown),
                     " ".join(f"{h['load_entropy']:.2f}" for h in shown), f"{history[-1]['loss']:.3f}",
                     f"{best['val_ndcg_at_20']:.4f} (epoch {best['epoch']})", f"{ndcg:.4f}"])
    print(f"\n## Expert load per epoch (every {max(1, len(history) // 8)}th shown), {InterestConfig.n_experts} routed "
          f"experts, top-{InterestConfig.top_k}, `{preset}` ({len(s.users)} users)\n")
    print(table(["balancing", "max/mean per epoch", "entropy per epoch", "final loss", "best val NDCG@20",
                 "test NDCG@20"], rows))


def export(n: int, dim: int) -> None:
    vectors = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    ids = [f"u{i}" for i in range(n)]
    with tempfile.TemporaryDirectory() as folder, local_redis(Path(folder)) as url:
        store = OnlineStore.connect(url)
        store.export(ids, vectors)                       # a first version, so the timed one also cleans up
        with measured() as m:
            report = store.export(ids, vectors)
        assert np.array_equal(store.get_user_vector("u12345"), vectors[12345])
    print(f"\n## Export to Redis ({dim}-d float32, pipelined, versioned switch)\n")
    print(table(["vectors", "seconds", "vectors/s", "target"],
                [[report.users, m.seconds, report.users / m.seconds, "< 5 s"]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="large")
    parser.add_argument("--users", type=int, default=4096, help="users trained for the throughput figure")
    parser.add_argument("--balance-preset", default="small")
    parser.add_argument("--balance-epochs", type=int, default=None,
                        help="fixed epochs (default: the config's, with early stopping on validation)")
    parser.add_argument("--export", type=int, default=100_000)
    parser.add_argument("--parts", default="export,throughput,balancing")
    args = parser.parse_args()
    torch.manual_seed(0)
    parts = args.parts.split(",")
    if "export" in parts:
        export(args.export, 128)
    if "throughput" in parts:
        throughput(args.preset, args.users)
    if "balancing" in parts:
        balancing(args.balance_preset, args.balance_epochs)


if __name__ == "__main__":
    main()
