"""What a text encoder reads about a user or an item, when the source names its items.

A sentence encoder knows films by their titles, not by our activity summaries:
for a source whose items carry a ``title`` attribute (MovieLens), an item's
text is its title, year and genres, and a user's is the same for the items of
their train history, most recent first, cut at about the encoder's 256 tokens
(the encoder truncates exactly; the oldest items go first). Other sources
(synthetic, files without titles) get empty texts, and their profiles are
embedded instead. Train split only, like the prompts.
"""
from __future__ import annotations

import re

import pandas as pd

from kwai_assets.core.split import history_rows
from kwai_assets.llm.text import count_tokens

UNKNOWN = "unknown"
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_ANY_YEAR = re.compile(r"(\d{4})")


def _item_text(title: str, release: str, genres: str) -> str:
    """'Toy Story (1995): Animation, Children's, Comedy.'; whatever is unknown is left out."""
    title = "" if title in (None, UNKNOWN) or title != title else str(title).strip()
    if title and not _YEAR.search(title) and release and (year := _ANY_YEAR.search(str(release))):
        title = f"{title} ({year.group(1)})"
    genres = ", ".join(g for g in str(genres or "").split("|") if g and g != UNKNOWN)
    return f"{title}: {genres}." if title and genres else f"{title or genres}." if title or genres else ""


def item_texts(id_maps: pd.DataFrame, item_attributes: pd.DataFrame) -> pd.Series | None:
    """item_idx -> text, or None when the items have no `title` attribute (nothing better than the profile)."""
    if "title" not in item_attributes.columns:
        return None
    attrs = item_attributes.astype({"item_id": "str"}).set_index("item_id")
    items = id_maps[id_maps["entity"] == "item"]
    rows = attrs.reindex(items["raw_id"].astype(str))
    genres = rows["genres"] if "genres" in rows.columns else rows.get("category", pd.Series("", index=rows.index))
    release = rows["release"] if "release" in rows.columns else pd.Series("", index=rows.index)
    texts = [_item_text(t, r, g) for t, r, g in zip(rows["title"], release, genres, strict=True)]
    return pd.Series(texts, index=items["idx"].to_numpy(), dtype="str")


def user_texts(splits: pd.DataFrame, items: pd.Series, max_tokens: int = 256) -> pd.Series:
    """user_idx -> the texts of the user's train items, most recent first, up to about `max_tokens` tokens.

    The estimate (`count_tokens`: words and punctuation) is at most the encoder's word-piece count, so the text
    holds at least `max_tokens` word pieces when the history is long enough and the encoder's cut is exact.
    """
    train = history_rows(splits).iloc[::-1]                              # each user's most recent first
    text = items.reindex(train["item_idx"]).fillna("").to_numpy()
    tokens = pd.Series([count_tokens(t) for t in text], index=train.index)
    before = tokens.groupby(train["user_idx"]).cumsum() - tokens       # tokens of the more recent items
    keep = (before < max_tokens) & (tokens > 0)
    kept = pd.Series(text, index=train.index)[keep]
    return kept.groupby(train.loc[keep, "user_idx"]).agg(" ".join).astype("str")


def entity_texts(entity: str, keys: pd.Series, splits: pd.DataFrame, id_maps: pd.DataFrame,
                 item_attributes: pd.DataFrame, max_tokens: int = 256) -> list[str]:
    """The text of each of `keys` (users or items) for the encoder; all empty when the items have no titles."""
    items = item_texts(id_maps, item_attributes)
    if items is None:
        return [""] * len(keys)
    table = items if entity == "item" else user_texts(splits, items, max_tokens)
    return table.reindex(keys.to_numpy()).fillna("").astype(str).tolist()
