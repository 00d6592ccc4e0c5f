"""The DIN ranker: scoring throughput, training speed, and the activation / channel-feature ablation.

1. Scoring: candidates/s of `din.score` for 10,000 users x 200 candidates (random ids and features on a
   catalogue of 20,000 items; the cost does not depend on the values), on the CPU threads torch uses, and on
   CUDA when present.
2. Ablation, on each materialized home (after `make demo` and `make demo-movielens`): Dice vs PReLU vs ReLU,
   with and without the channel features, trained on `training_candidates` as the `ranker` asset trains
   (early stopping on the holdout users' val NDCG@20); the holdout's AUC, GAUC and NDCG@20; training samples/s;
   and test NDCG@20 of the reranked `candidates` under the evaluation's protocol (read once per configuration),
   next to the candidates' own order and the stored evaluation's best single recall model.

3. `--val-only '{"negatives": 20}' ...`: DINConfig overrides compared on the holdout alone (how the defaults
   were chosen; test is not read).

Usage: python benchmarks/bench_rank.py [--homes .kwai .kwai-ml100k] [--skip-ablation] [--val-only JSON ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import table  # noqa: E402

from kwai_assets.core.evaluation import EvalData, device, evaluate, ranked_lists  # noqa: E402
from kwai_assets.core.reid import index_sizes  # noqa: E402
from kwai_assets.io.warehouse import Warehouse  # noqa: E402
from kwai_assets.models import din  # noqa: E402

RECALL_MODELS = ("swing_item_knn", "interest_model", "two_tower", "item2vec_recent_knn", "cf")


def throughput(users: int = 10_000, per_user: int = 200, items: int = 20_000) -> list[list[object]]:
    """candidates/s of din.score on random inputs of the demo's shapes (6 channels, 3 user attributes)."""
    rng = np.random.default_rng(0)
    channels = ["swing", "two_tower", "interest", "cf", "item2vec", "popularity"]
    catalog = din.Catalog(users + 1, items, rng.integers(0, 5, (users + 1, 3)), [5, 5, 5],
                          np.stack([rng.integers(0, 20, items), rng.integers(0, 500, items),
                                    rng.integers(0, 100, items)], 1), [20, 500, 100],
                          np.full((items, 2), np.nan), np.ones(items, bool))
    n = users * per_user
    model = din.build_model(catalog, channels, din.DINConfig()).to(device())
    data = din.RankingData(users=np.repeat(np.arange(1, users + 1), per_user), items=rng.integers(1, items, n),
                           labels=np.zeros(n, np.float32),
                           numeric=rng.random((n, din.n_channel_features(len(channels)) + 2), np.float32),
                           order=np.tile(np.arange(1, per_user + 1), users),
                           histories=rng.integers(1, items, (users + 1, din.DINConfig().history_len)),
                           places=np.full((users + 1, din.USUAL_PLACES, 2), np.nan),
                           relevant=sp.csr_matrix((users + 1, items)), seen=sp.csr_matrix((users + 1, items)),
                           channels=channels)
    din.score(model, data, np.arange(min(n, 20_000)))          # warm-up
    start = time.perf_counter()
    din.score(model, data)
    seconds = time.perf_counter() - start
    where = f"{device().type}" + (f" ({torch.get_num_threads()} threads)" if device().type == "cpu" else "")
    return [[f"{users:,} users x {per_user} candidates", where, round(seconds, 1), int(n / seconds)]]


def periods(home: str) -> tuple[EvalData, din.Catalog, din.RankingData, din.RankingData]:
    """The home's test data, catalogue, training period (training_candidates) and serving period (candidates)."""
    wh = Warehouse(home)
    splits, id_maps = wh.read("splits"), wh.read("id_maps")
    sizes = index_sizes(id_maps)
    data = EvalData.from_splits(splits, n_users=sizes["user"], n_items=sizes["item"])
    catalog = din.Catalog.from_frames(splits, id_maps, wh.read("user_attributes"))
    history_len = din.DINConfig().history_len
    train = din.RankingData.build(catalog, wh.read("training_candidates"), splits, ("train",), "val", history_len)
    serve = din.RankingData.build(catalog, wh.read("candidates"), splits, ("train", "val"), None, history_len,
                                  train.channels)
    return data, catalog, train, serve


def validation_only(home: str, overrides: list[dict]) -> list[list[object]]:
    _, catalog, train, _ = periods(home)
    rows = []
    for change in overrides:
        start = time.perf_counter()
        _, history, order = din.train_din(train, catalog, din.DINConfig(**change))
        best = max(history, key=lambda h: h["val_ndcg_at_20"])
        rows.append([home, json.dumps(change), f"{best['val_auc']:.4f}", f"{best['val_gauc']:.4f}",
                     f"{best['val_ndcg_at_20']:.4f}", f"{best['epoch']} of {len(history)}",
                     round(time.perf_counter() - start)])
        print(rows[-1], flush=True)
    rows.append([home, "the candidates' own order", f"{order['auc']:.4f}", f"{order['gauc']:.4f}",
                 f"{order['ndcg_at_20']:.4f}", "", ""])
    return rows


def ablation(home: str) -> list[list[object]]:
    data, catalog, train, serve = periods(home)
    stored = Warehouse(home).read("evaluation")
    ndcg = stored[(stored["metric"] == "ndcg") & (stored["k"] == 20)].set_index("model")["value"]
    best_single = ndcg.reindex(list(RECALL_MODELS)).idxmax()
    rows = [[home, f"best single recall model ({best_single})", "", "", "", "", "", f"{ndcg[best_single]:.4f}"]]
    order = serve_order(serve)
    _, holdout = din.split_users(train, din.DINConfig().holdout, din.DINConfig().seed)
    val_rows = train.rows_of(holdout)
    base = din.ranking_metrics(train.users[val_rows], train.order[val_rows], -train.order[val_rows].astype(float),
                               train.labels[val_rows], train.relevant)
    rows.append([home, "candidates' own order (RRF)", f"{base['auc']:.4f}", f"{base['gauc']:.4f}",
                 f"{base['ndcg_at_20']:.4f}", "", "", f"{split_ndcg(data, order):.4f}"])
    for activation in din.ACTIVATIONS:
        for channels in (True, False):
            config = din.DINConfig(activation=activation, channel_features=channels)
            start = time.perf_counter()
            model, history, _ = din.train_din(train, catalog, config)
            seconds = time.perf_counter() - start
            best = max(history, key=lambda h: h["val_ndcg_at_20"])
            top = din.top_k(serve, din.score(model, serve), 50)
            rows.append([home, f"DIN {activation}" + ("" if channels else ", no channel features"),
                         f"{best['val_auc']:.4f}", f"{best['val_gauc']:.4f}", f"{best['val_ndcg_at_20']:.4f}",
                         int(np.mean([h["samples_per_s"] for h in history])),
                         f"{len(history)} / {round(seconds)} s", f"{split_ndcg(data, top):.4f}"])
            print(rows[-1], flush=True)
    return rows


def serve_order(serve: din.RankingData) -> pd.DataFrame:
    """The candidates' own order as lists (rank = the row's place), the top 50."""
    frame = pd.DataFrame({"user_idx": serve.users, "item_idx": serve.items, "rank": serve.order})
    return frame[frame["rank"] <= 50]


def split_ndcg(data: EvalData, lists: pd.DataFrame) -> float:
    return evaluate(ranked_lists(data, lists), data, ks=(20,))["ndcg", 20]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--homes", nargs="*", default=[".kwai", ".kwai-ml100k"])
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--val-only", nargs="*", type=json.loads, help="DINConfig overrides, compared on validation")
    args = parser.parse_args()
    if args.val_only:
        rows = [row for home in args.homes for row in validation_only(home, args.val_only)]
        print("\n## DIN settings on validation (the holdout users' val items)\n")
        print(table(["home", "DINConfig changes", "val AUC", "val GAUC", "val NDCG@20", "best epoch", "seconds"],
                    rows))
        return
    print("\n## DIN scoring throughput\n")
    print(table(["batch", "device", "seconds", "candidates/s"], throughput()))
    if args.skip_ablation:
        return
    rows = []
    for home in args.homes:
        if not Warehouse(home).exists("training_candidates"):
            print(f"skipping {home}: no training_candidates (run make demo / make demo-movielens first)")
            continue
        rows += ablation(home)
    print("\n## DIN ablation (validation on the holdout users' val items; test read once per row)\n")
    print(table(["home", "ranker", "val AUC", "val GAUC", "val NDCG@20", "train samples/s", "epochs / time",
                 "test NDCG@20"], rows))


if __name__ == "__main__":
    main()
