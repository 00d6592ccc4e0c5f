"""item2vec: gensim Word2Vec (skip-gram, negative sampling) on DeepWalk walks over the item Swing graph.

One vector per item that has a Swing neighbour (an item with none is on no
walk, and Word2Vec would leave it at its random start). With `workers=1` the
vectors are a function of the seed alone; more workers train faster and
differ run to run (gensim's thread scheduling).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from gensim.models import Word2Vec

from kwai_assets.core.walks import item_walks


@dataclass(frozen=True)
class Item2VecConfig:
    walks_per_node: int = 10     # DeepWalk walks started from every item with a neighbour
    walk_length: int = 40
    dim: int = 64
    window: int = 5              # skip-gram context on each side
    negative: int = 5            # negative samples per positive
    epochs: int = 5
    min_alpha: float = 0.0001    # learning rate decays linearly from 0.025 to this
    workers: int = 1             # gensim threads; 1 keeps the result deterministic
    seed: int = 0


@dataclass
class Item2VecStats:
    walks: int
    walk_steps_per_s: float
    words_per_s: float
    walk_s: float
    train_s: float

    def as_metadata(self) -> dict[str, float]:
        return self.__dict__.copy()


Walker = Callable[[pd.DataFrame, int, int, int, int], np.ndarray]   # (pairs, n_items, per node, length, seed)


def train_item2vec(pairs: pd.DataFrame, n_items: int, config: Item2VecConfig = Item2VecConfig(),
                   walker: Walker = item_walks) -> tuple[pd.DataFrame, Item2VecStats]:
    """(item_idx, vector) for every item on a walk, and the walk / training speeds; `walker` makes the walks
    (`core.walks.item_walks`, or the Spark engine's)."""
    if not len(pairs):
        raise ValueError("item2vec needs item pairs to walk on; item_positive_pairs is empty (no two users share "
                         "two items in the train split)")
    start = time.perf_counter()
    walks = walker(pairs, n_items, config.walks_per_node, config.walk_length, config.seed)
    walk_s = time.perf_counter() - start
    sentences = [list(map(str, walk)) for walk in walks.tolist()]
    start = time.perf_counter()
    model = Word2Vec(sentences, vector_size=config.dim, window=config.window, negative=config.negative, sg=1,
                     hs=0, min_count=1, sample=0, epochs=config.epochs, min_alpha=config.min_alpha,
                     workers=config.workers, seed=config.seed)
    train_s = time.perf_counter() - start
    items = np.array([int(key) for key in model.wv.index_to_key], dtype=np.int64)
    order = np.argsort(items)
    frame = pd.DataFrame({"item_idx": items[order], "vector": list(model.wv.vectors[order].astype(np.float32))})
    return frame, Item2VecStats(walks=len(walks), walk_steps_per_s=walks.size / max(walk_s, 1e-9),
                                words_per_s=walks.size * config.epochs / max(train_s, 1e-9), walk_s=walk_s,
                                train_s=train_s)
