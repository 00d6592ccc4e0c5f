"""What a served recommendation table must satisfy: the logic of the recommendations asset's check."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from kwai_assets.core.evaluation import entries


def recommendation_problems(top: pd.DataFrame, seen: sp.csr_matrix, k: int) -> list[str]:
    """Problems of (user_idx, item_idx, score, rank) lists: non-finite scores, more than k per user, an item the
    user already saw (`seen`: users x items), a repeated item, or ranks that do not follow the scores."""
    if not len(top):
        return ["no recommendation list at all"]
    problems = []
    scores = top["score"].to_numpy(np.float64)
    if (bad := ~np.isfinite(scores)).any():
        users = np.unique(top["user_idx"].to_numpy()[bad])
        problems.append(f"{int(bad.sum())} non-finite scores (users {users[:5].tolist()})")
    per_user = top.groupby("user_idx").size()
    if (per_user > k).any():
        problems.append(f"{int((per_user > k).sum())} users with more than {k} items (at most {int(per_user.max())})")
    users, items = top["user_idx"].to_numpy(), top["item_idx"].to_numpy()
    known = entries(seen, users, items) > 0
    if known.any():
        problems.append(f"{int(known.sum())} items the user already saw in train or val "
                        f"(e.g. user_idx {users[known][0]}, item_idx {items[known][0]})")
    if top.duplicated(["user_idx", "item_idx"]).any():
        problems.append(f"{int(top.duplicated(['user_idx', 'item_idx']).sum())} repeated (user, item) rows")
    ordered = top.sort_values(["user_idx", "rank"], kind="stable")
    falls = ordered.groupby("user_idx")["score"].diff().to_numpy()
    if (falls > 0).any():
        problems.append(f"{int((falls > 0).sum())} ranks above a higher score")
    return problems
