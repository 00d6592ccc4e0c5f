"""Prompts -> profiles (through the cache) -> embeddings."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from kwai_assets.llm.backends import Backend
from kwai_assets.llm.cache import GenerationCache
from kwai_assets.llm.encoder import Encoder


@dataclass
class GenerationStats:
    prompts: int
    cached: int
    generated: int
    tokens_in: int
    tokens_out: int
    seconds: float
    prompts_per_s: float
    tokens_per_s: float

    def as_metadata(self) -> dict[str, float]:
        return asdict(self)


def generate_profiles(prompts: pd.Series, backend: Backend, cache: GenerationCache, batch_size: int = 64,
                      progress: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, GenerationStats]:
    """profile, tokens_in, tokens_out, cached for every prompt, in the order given.

    Prompts not in the cache are generated in length-sorted batches of
    `batch_size`, and each batch is written to the cache before the next starts;
    `progress` gets one line per batch (the run's log).
    """
    identity = backend.identity()
    keys = [cache.key(identity, p) for p in prompts]
    found = cache.get(list(dict.fromkeys(keys))).set_index("key")
    todo = {k: p for k, p in zip(keys, prompts, strict=True) if k not in found.index}
    order = sorted(todo, key=lambda k: (len(todo[k]), k))
    start, tokens_in, tokens_out = time.perf_counter(), 0, 0
    fresh = []
    for lo in range(0, len(order), batch_size):
        batch = order[lo:lo + batch_size]
        generations = backend.generate([todo[k] for k in batch])
        rows = pd.DataFrame({"key": batch, "text": [g.text for g in generations],
                             "tokens_in": [g.tokens_in for g in generations],
                             "tokens_out": [g.tokens_out for g in generations]})
        cache.put(rows)
        fresh.append(rows)
        tokens_in += int(rows["tokens_in"].sum())
        tokens_out += int(rows["tokens_out"].sum())
        if progress is not None:
            done, elapsed = lo + len(batch), time.perf_counter() - start
            progress(f"batch {lo // batch_size + 1}/{-(-len(order) // batch_size)}: {done}/{len(order)} prompts "
                     f"generated ({len(found)} cached), {tokens_out / max(elapsed, 1e-9):.0f} tokens/s")
    seconds = time.perf_counter() - start
    cache.compact()
    table = pd.concat([found.reset_index(), *fresh], ignore_index=True).set_index("key")
    out = (table.loc[keys, ["text", "tokens_in", "tokens_out"]].rename(columns={"text": "profile"})
           .astype({"profile": "str", "tokens_in": "int64", "tokens_out": "int64"}).reset_index(drop=True))
    out["cached"] = [k not in todo for k in keys]
    stats = GenerationStats(prompts=len(keys), cached=int(out["cached"].sum()), generated=len(todo),
                            tokens_in=tokens_in, tokens_out=tokens_out, seconds=round(seconds, 3),
                            prompts_per_s=round(len(todo) / seconds, 1) if seconds > 0 else 0.0,
                            tokens_per_s=round(tokens_out / seconds, 1) if seconds > 0 else 0.0)
    return out, stats


def embed_profiles(texts: list[str], encoder: Backend | Encoder) -> np.ndarray:
    """One float32 vector per text; rows with non-finite values are an error, not a silent NaN."""
    vectors = encoder.embed(texts)
    if len(texts) and not np.isfinite(vectors).all():
        raise FloatingPointError(f"{encoder.kind} produced non-finite embeddings")
    return vectors


def embedding_texts(profiles: pd.DataFrame, prompts: pd.DataFrame, key: str) -> tuple[list[str], str]:
    """What to embed for each row of `profiles`: the entity's text where the prompts carry one (a source that
    names its items), else the profile; and which of the two it was ("texts", "profiles" or "texts and profiles").
    """
    text = (prompts.set_index(key)["text"].reindex(profiles[key].to_numpy()).fillna("").astype(str).to_numpy()
            if "text" in prompts.columns else np.full(len(profiles), "", dtype=object))
    has = np.char.str_len(text.astype(str)) > 0 if len(text) else np.zeros(0, bool)
    chosen = np.where(has, text, profiles["profile"].to_numpy()).tolist()
    read = "texts" if has.all() and len(has) else "profiles" if not has.any() else "texts and profiles"
    return [str(t) for t in chosen], read


def shard_of(index: pd.Series | np.ndarray, shards: int) -> np.ndarray:
    """Stable shard of an entity index: Knuth's multiplicative hash, mod `shards`."""
    hashed = (np.asarray(index, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return (hashed % np.uint64(shards)).astype(np.int64)
