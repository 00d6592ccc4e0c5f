"""Prompts, backends, the generation cache, and the LLM assets end to end on a tiny local Qwen2."""
import json
import shutil
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import SHARDS, build_shard
from tiny_llm import build_tiny_qwen

from kwai_assets.io.warehouse import Warehouse
from kwai_assets.llm.backends import TemplateBackend, TransformersBackend, VLLMBackend, open_backend
from kwai_assets.llm.cache import GenerationCache
from kwai_assets.llm.profiles import generate_profiles, shard_of
from kwai_assets.llm.prompts import PromptConfig, item_prompts, user_prompts
from kwai_assets.llm.text import SYSTEM, count_tokens, document_of
from kwai_assets.resources import LLMResource


@pytest.fixture(scope="module")
def tables(warehouse):
    return [warehouse.read(n) for n in ("splits", "id_maps", "user_attributes", "poi_attributes")]


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))


# -- prompts ------------------------------------------------------------------------------------------------
def test_prompts_see_the_train_split_only(tables):
    splits = tables[0]
    prompts = user_prompts(*tables)
    train = splits[splits.split == "train"]
    assert set(prompts["user_idx"]) == set(train["user_idx"])
    counts = train.groupby("user_idx").size()
    assert all(json.loads(d)["interactions"] == counts[u]
               for u, d in zip(prompts.user_idx, prompts.document, strict=True))
    # a category a user only has in val/test never shows up in their document
    names = tables[1].query("entity == 'category'").set_index("idx")["raw_id"]
    later = splits[splits.split != "train"].assign(name=lambda d: d.category_idx.map(names))
    seen = train.assign(name=lambda d: d.category_idx.map(names)).groupby("user_idx")["name"].agg(set)
    only_later = later[~later.apply(lambda r: r["name"] in seen.get(r.user_idx, set()), axis=1)]
    documents = prompts.set_index("user_idx")["document"].map(json.loads)
    for row in only_later.head(50).itertuples():
        assert row.name not in documents[row.user_idx]["categories"]


def test_prompt_length_is_bounded_by_summarising(tables):
    full = user_prompts(*tables)
    short = user_prompts(*tables, config=PromptConfig(max_tokens=150))
    assert full["prompt_tokens"].max() > 150
    assert short["prompt_tokens"].max() <= 150
    for prompt in short["prompt"]:
        doc = document_of(prompt)                          # still whole JSON, whole records
        assert all(set(p) == {"name", "category", "cell", "visits"} for p in doc.get("places", []))
    assert (short["prompt"].map(count_tokens) == short["prompt_tokens"]).all()


def test_prompts_are_deterministic_and_describe_items(tables):
    pd.testing.assert_frame_equal(user_prompts(*tables), user_prompts(*tables))
    items = item_prompts(*tables)
    doc = json.loads(items["document"].iloc[0])
    assert {"category", "interactions", "users", "day_parts", "weekend_share", "audience"} <= set(doc)
    assert set(doc["audience"]) == {"gender", "age_range", "city"}


def test_shards_are_stable_and_balanced():
    shards = shard_of(np.arange(1, 10_001), 4)
    assert np.array_equal(shards, shard_of(np.arange(1, 10_001), 4))
    assert np.bincount(shards).min() > 2_000


# -- template backend -----------------------------------------------------------------------------------------
def test_template_profiles_and_embeddings_keep_planted_tastes(tables):
    prompts = user_prompts(*tables)
    backend = TemplateBackend(dim=64)
    texts = [g.text for g in backend.generate(prompts["prompt"].tolist())]
    favourite = [next(iter(json.loads(d)["categories"])) for d in prompts["document"]]
    assert all(f"Favourite categories: {f}" in t for f, t in zip(favourite, texts, strict=True))
    vectors = backend.embed(texts)
    assert vectors.shape == (len(texts), 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # stateless: a text embedded alone equals the same text embedded in a batch
    assert np.allclose(backend.embed(texts[:1]), vectors[:1])
    same = np.array(favourite)[:, None] == np.array(favourite)[None, :]
    cosine = vectors @ vectors.T
    off_diagonal = ~np.eye(len(texts), dtype=bool)
    assert cosine[same & off_diagonal].mean() > cosine[~same].mean() + 0.05


# -- cache ----------------------------------------------------------------------------------------------------
def test_cache_round_trip_and_compaction(tmp_path):
    cache = GenerationCache(tmp_path)
    for i in range(3):
        cache.put(pd.DataFrame({"key": [f"k{i}"], "text": [f"t{i}"], "tokens_in": [1], "tokens_out": [2]}))
    assert len(list(tmp_path.glob("*.parquet"))) == 3
    cache.compact()
    assert len(list(tmp_path.glob("*.parquet"))) == 1
    assert cache.get(["k2", "k0", "zz"]).set_index("key")["text"].to_dict() == {"k0": "t0", "k2": "t2"}


def test_generation_is_cached_by_backend_and_prompt(tmp_path):
    cache, backend = GenerationCache(tmp_path), TemplateBackend()
    prompts = pd.Series(['Summarise.\n{"interactions":1,"day_parts":{},"top_hours":[],"weekend_share":0}'] * 3)
    first, stats = generate_profiles(prompts, backend, cache)
    assert stats.generated == 1 and stats.cached == 0 and len(first) == 3    # identical prompts: one call
    again, stats = generate_profiles(prompts, backend, cache)
    assert stats.generated == 0 and stats.cached == 3 and again["profile"].equals(first["profile"])


# -- transformers / vLLM backends -----------------------------------------------------------------------------
def test_missing_model_or_package_fails_at_once(tmp_path):
    with pytest.raises(FileNotFoundError, match="KWAI_LLM_MODEL"):
        open_backend("transformers", str(tmp_path / "nowhere"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ImportError, match=r"pip install '\.\[gpu\]'"):
        open_backend("vllm", str(tmp_path))
    with pytest.raises(ValueError, match="unknown LLM backend"):
        open_backend("gpt", "")


def test_transformers_backend_generates_and_embeds(tiny_qwen):
    backend = TransformersBackend(str(tiny_qwen), batch_size=3, max_new_tokens=5)
    prompts = ["Summarise.\n{}", "Summarise a much longer prompt about cafes and parks.\n{}", "x", "yy", "zzz"]
    out = backend.generate(prompts)
    assert len(out) == 5 and all(0 < g.tokens_out <= 5 and g.tokens_in > 0 for g in out)
    assert [g.text for g in out] == [g.text for g in backend.generate(prompts)]        # greedy: deterministic
    alone = backend.generate(prompts[1:2])[0]
    assert alone.text == out[1].text                                                   # padding changes nothing
    vectors = backend.embed(prompts)
    assert vectors.shape == (5, 64) and np.isfinite(vectors).all()
    assert np.allclose(backend.embed(prompts[3:4]), vectors[3:4], atol=1e-4)


class StandInLLM:
    """Implements the part of vllm.LLM the backend uses."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append(len(prompts))
        return [SimpleNamespace(prompt_token_ids=self.tokenizer(p)["input_ids"],
                                outputs=[SimpleNamespace(text=f" echo {len(p)} ", token_ids=[1, 2, 3])])
                for p in prompts]


def test_vllm_backend_batches_by_64_with_the_chat_template(tiny_qwen):
    from transformers import AutoTokenizer

    llm = StandInLLM(AutoTokenizer.from_pretrained(tiny_qwen))
    backend = VLLMBackend(str(tiny_qwen), llm=llm, sampling_params=object())
    out = backend.generate([f"prompt {i}" for i in range(150)])
    assert llm.calls == [64, 64, 22]
    chat = llm.tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": "prompt 0"}], tokenize=False, add_generation_prompt=True)
    assert out[0].text == f"echo {len(chat)}" and out[0].tokens_out == 3 and out[0].tokens_in > 10


# -- the assets, end to end -----------------------------------------------------------------------------------
def test_assets_with_the_transformers_backend_cache_and_resume(built, tiny_qwen, tmp_path, monkeypatch):
    settings, _ = built
    home = tmp_path / "home"
    # the prepared tables, without the template-backend shards (the checks reject mixed dimensions)
    shutil.copytree(settings.home / "warehouse", home / "warehouse",
                    ignore=shutil.ignore_patterns("*_profiles", "*_llm_embeddings"))
    here = type(settings)(**{**settings.__dict__, "home": home})
    llm = LLMResource(backend="transformers", model=str(tiny_qwen), batch_size=8, max_new_tokens=4,
                      cache_dir=str(home / "cache"))
    shard = SHARDS[0]
    n_prompts = int((Warehouse(home).read("user_prompts")["shard"] == int(shard)).sum())
    assert n_prompts > 24

    calls = {"n": 0}
    real = TransformersBackend.generate

    def fails_on_third_batch(self, prompts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("GPU fell over")
        return real(self, prompts)

    users = dg.AssetSelection.assets("user_profiles", "user_llm_embeddings")
    monkeypatch.setattr(TransformersBackend, "generate", fails_on_third_batch)
    crashed = build_shard(here, shard, {"llm": llm}, selection=users, raise_on_error=False)
    assert not crashed.success
    monkeypatch.setattr(TransformersBackend, "generate", real)

    resumed = build_shard(here, shard, {"llm": llm}, selection=users)
    meta = resumed.asset_materializations_for_node("user_profiles")[0].metadata
    assert meta["cached"].value == 16 and meta["generated"].value == n_prompts - 16
    assert meta["tokens_out"].value > 0 and meta["prompts_per_s"].value > 0

    again = build_shard(here, shard, {"llm": llm}, selection=users)
    meta = again.asset_materializations_for_node("user_profiles")[0].metadata
    assert meta["cached"].value == n_prompts and meta["generated"].value == 0

    wh = Warehouse(home)
    profiles, vectors = wh.read("user_profiles", [shard]), wh.read("user_llm_embeddings", [shard])
    assert len(profiles) == n_prompts and (profiles["tokens_out"] > 0).all()    # a random model: text may be blank
    assert np.stack(vectors["vector"]).shape == (n_prompts, 64)
    assert all(e.passed for e in again.get_asset_check_evaluations())
