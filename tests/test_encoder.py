"""The text encoders: a sentence encoder from a local folder, the packaged all-MiniLM-L6-v2 (extracted once, its
weights' hash checked), the hashed fallback, and the texts a source that names its items gets embedded from."""
import importlib.metadata
import logging

import numpy as np
import pandas as pd
import pytest

from kwai_assets.llm import encoder as enc
from kwai_assets.llm.backends import TemplateBackend
from kwai_assets.llm.profiles import embedding_texts
from kwai_assets.llm.texts import entity_texts, item_texts, user_texts

WORDS = ("the a user watches films about cats dogs space war love comedy drama in morning evening city "
         "park cafe music sport food travel night weekend").split()
INSTALLED = True
try:
    importlib.metadata.distribution(enc.PACKAGE)
except importlib.metadata.PackageNotFoundError:
    INSTALLED = False


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 2-layer BERT and a WordPiece tokenizer, written locally (no download)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ","]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=512))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    if not INSTALLED:
        pytest.skip(f"{enc.PACKAGE} is not installed")
    cache = tmp_path_factory.mktemp("encoders")
    return cache, enc.open_encoder("sentence", cache_dir=cache)


# -- any local folder ---------------------------------------------------------------------------------------
def test_sentence_encoder_pools_normalises_and_batches(tiny_bert):
    encoder = enc.SentenceEncoder(tiny_bert, batch_size=2, max_tokens=16, precision="float32")
    texts = ["the user watches films about cats", "a", "dogs in the park in the evening . " * 20,
             "love comedy", ""]
    vectors = encoder.embed(texts)
    assert vectors.shape == (5, 32) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # padding and batch neighbours change nothing; a text over max_tokens is cut, not an error
    for i, text in enumerate(texts):
        assert np.allclose(encoder.embed([text])[0], vectors[i], atol=1e-5)
    assert np.array_equal(encoder.embed(texts), vectors)                     # deterministic
    assert encoder.embed([]).shape == (0, 32)
    assert "32 dims" in encoder.describe() and "max 16 tokens" in encoder.describe()


def test_a_configured_folder_wins_and_a_bad_one_fails_at_once(tiny_bert, tmp_path):
    chosen = enc.open_encoder("auto", TemplateBackend(), model_dir=str(tiny_bert), cache_dir=tmp_path)
    assert chosen.kind == "sentence" and chosen.dim == 32
    with pytest.raises(FileNotFoundError, match=f"encoder folder {tmp_path / 'nowhere'} has no config.json"):
        enc.open_encoder("sentence", model_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="unknown encoder 'bert'"):
        enc.open_encoder("bert")
    with pytest.raises(ValueError, match="needs an LLM backend with weights"):
        enc.open_encoder("llm", TemplateBackend())


# -- the packaged model ---------------------------------------------------------------------------------------
def test_packaged_model_is_extracted_once_and_understands_paraphrases(packaged):
    cache, encoder = packaged
    folder = cache / f"all-MiniLM-L6-v2-{importlib.metadata.version(enc.PACKAGE)}"
    assert [p.name for p in cache.iterdir()] == [folder.name]                 # no temporary folder left
    assert encoder.folder == folder and encoder.dim == 384 and encoder.sha256 == enc.WEIGHTS_SHA256
    assert enc.MODEL_NAME in encoder.describe() and enc.WEIGHTS_SHA256[:12] in encoder.describe()
    a, b, c = encoder.embed(["A man is playing the guitar on stage.",
                             "Someone performs a song on a guitar in front of an audience.",
                             "The quarterly tax report is due next Monday."])
    assert a @ b > a @ c + 0.3 and a @ b > b @ c + 0.3
    mtime = folder.stat().st_mtime_ns
    assert enc.packaged_model_dir(cache)[0] == folder and folder.stat().st_mtime_ns == mtime     # not again


def test_tampered_weights_are_rejected_naming_the_file(packaged, tmp_path):
    fake = tmp_path / "model"
    fake.mkdir()
    (fake / enc.WEIGHTS).write_bytes(b"not the weights")
    with pytest.raises(enc.WeightsMismatch, match=f"encoder weights {fake / enc.WEIGHTS} have sha256 [0-9a-f]{{64}}, "
                                                  f"expected {enc.WEIGHTS_SHA256}"):
        enc.verify_weights(fake)
    # the extracted copy itself, changed by one byte after extraction
    cache = tmp_path / "cache"
    folder = enc.packaged_model_dir(cache)[0]
    with open(folder / enc.WEIGHTS, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(enc.WeightsMismatch, match=f"{folder / enc.WEIGHTS} have sha256 .*delete {folder}"):
        enc.open_encoder("auto", cache_dir=cache)


def test_a_missing_package_falls_back_to_hashing_and_says_so(monkeypatch, tmp_path, caplog):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(enc.importlib.metadata, "distribution", absent)
    lines = []
    encoder = enc.open_encoder("auto", TemplateBackend(), cache_dir=tmp_path, log=lines.append)
    assert encoder.kind == "hashed" and encoder.embed(["cats and dogs"]).shape == (1, 128)
    assert lines == [f"{enc.PACKAGE} is not installed: embedding with the hashed template encoder instead "
                     f"(pip install {enc.PACKAGE} for {enc.MODEL_NAME})"]
    with caplog.at_level(logging.WARNING, logger=enc.__name__):
        enc.open_encoder("auto", cache_dir=tmp_path)
    assert "is not installed: embedding with the hashed template encoder" in caplog.text
    with pytest.raises(ModuleNotFoundError, match=f"pip install {enc.PACKAGE}"):
        enc.open_encoder("sentence", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


# -- what gets embedded ---------------------------------------------------------------------------------------
def _movies():
    id_maps = pd.DataFrame({"entity": ["item"] * 3 + ["user"] * 2, "raw_id": ["10", "11", "12", "u1", "u2"],
                            "idx": [1, 2, 3, 1, 2], "generation": 0})
    items = pd.DataFrame({"item_id": ["10", "11", "12"], "title": ["Toy Story (1995)", "Heat", "unknown"],
                          "release": ["01-Jan-1995", "15-Dec-1995", "unknown"],
                          "genres": ["Animation|Children's|Comedy", "Action|Crime|Thriller", "unknown"],
                          "category": ["Animation", "Action", "unknown"]})
    splits = pd.DataFrame({"user_idx": [1, 1, 1, 2, 2], "item_idx": [1, 2, 3, 2, 1],
                           "ts": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-01",
                                                 "2020-01-05"]),
                           "split": ["train", "train", "train", "train", "test"]})
    return id_maps, items, splits


def test_movie_texts_carry_titles_years_and_genres_recent_first_from_train_only():
    id_maps, items, splits = _movies()
    texts = item_texts(id_maps, items)
    assert texts.to_dict() == {1: "Toy Story (1995): Animation, Children's, Comedy.",
                               2: "Heat (1995): Action, Crime, Thriller.", 3: ""}
    users = user_texts(splits, texts)
    assert users.to_dict() == {1: "Heat (1995): Action, Crime, Thriller. Toy Story (1995): Animation, Children's, "
                                  "Comedy.",
                               2: "Heat (1995): Action, Crime, Thriller."}            # Toy Story is user 2's test
    assert user_texts(splits, texts, max_tokens=5).to_dict()[1] == "Heat (1995): Action, Crime, Thriller."
    assert entity_texts("user", pd.Series([2, 1, 9]), splits, id_maps, items)[0] == users[2]
    assert entity_texts("user", pd.Series([9]), splits, id_maps, items) == [""]
    # a source without titles (synthetic, files): empty texts, so the profiles are embedded
    assert entity_texts("item", pd.Series([1, 2]), splits, id_maps, items.drop(columns="title")) == ["", ""]


def test_embedding_texts_prefer_the_text_over_the_profile():
    profiles = pd.DataFrame({"item_idx": [3, 1, 2], "profile": ["p3", "p1", "p2"]})
    prompts = pd.DataFrame({"item_idx": [1, 2, 3], "text": ["t1", "", "t3"]})
    assert embedding_texts(profiles, prompts, "item_idx") == (["t3", "t1", "p2"], "texts and profiles")
    assert embedding_texts(profiles, prompts.assign(text=""), "item_idx") == (["p3", "p1", "p2"], "profiles")
    assert embedding_texts(profiles, prompts.drop(columns="text"), "item_idx")[1] == "profiles"
