"""Exact Swing against the formula read literally, by hand and on random data."""
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from swing_reference import random_matrix, rows_of, swing_reference, work_count

import kwai_assets.core.swing as swing_module
from kwai_assets.core.swing import binarize, capped, columns_with_neighbours, swing


def matrix(rows: dict[int, list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in rows.items() for _ in items]
    c = [i for items in rows.values() for i in items]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(max(rows) + 1, n_items))


def as_dict(pairs: pd.DataFrame) -> dict[tuple[int, int], float]:
    return {(s, d): v for s, d, v in pairs.itertuples(index=False)}


def test_two_users_by_hand():
    # u0 {0, 1, 2}, u1 {0, 1}: one pair sharing {0, 1} -> 1 / (1 + 2) on (0, 1) both ways
    pairs, stats = swing(matrix({0: [0, 1, 2], 1: [0, 1]}, 3))
    assert as_dict(pairs) == {(0, 1): pytest.approx(1 / 3), (1, 0): pytest.approx(1 / 3)}
    assert (stats.pairs, stats.work) == (1, 4)


def test_three_users_by_hand():
    # a=0, b=1, c=2; u0 {a, b}, u1 {a, b, c}, u2 {a, c}
    # pairs: (u0, u1) share {a, b}; (u0, u2) share {a} only; (u1, u2) share {a, c}
    m = matrix({0: [0, 1], 1: [0, 1, 2], 2: [0, 2]}, 3)
    got = as_dict(swing(m, alpha=0.5)[0])
    assert got == pytest.approx({(0, 1): 1 / 2.5, (1, 0): 1 / 2.5, (0, 2): 1 / 2.5, (2, 0): 1 / 2.5})
    weighted = as_dict(swing(m, alpha=1.0, user_weight=True)[0])
    w01 = 1 / np.sqrt(2 * 3) / 3
    w12 = 1 / np.sqrt(3 * 2) / 3
    assert weighted == pytest.approx({(0, 1): w01, (1, 0): w01, (0, 2): w12, (2, 0): w12})


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha, user_weight", [(1.0, False), (0.3, False), (2.0, True)])
def test_agrees_with_the_literal_formula(seed, alpha, user_weight):
    m = random_matrix(seed)
    # tiny blocks force many user blocks and runs of Q folded one after the other
    pairs, stats = swing(m, alpha=alpha, user_weight=user_weight, top_k=10_000, block_triples=40, block_entries=90)
    ref = swing_reference(rows_of(m), alpha=alpha, user_weight=user_weight)
    got = as_dict(pairs)
    assert set(got) == set(ref)
    assert max(abs(got[k] - ref[k]) for k in ref) < 1e-9
    assert stats.work == work_count(rows_of(m))
    assert all(got[i, j] == got[j, i] for i, j in got)      # bit-identical both ways


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha, user_weight", [(1.0, False), (0.3, True)])
def test_bit_identical_to_the_formula_summed_in_pair_order(seed, alpha, user_weight):
    # the reference adds the pair weights of sim(i, j) in (u, v) order from 0.0; so does swing, whatever the
    # sizes of its user blocks (step 1) and of the runs of Q folded into sim (step 2), with or without the thread
    m = random_matrix(seed, users=60, items=30, density=0.25)
    rows = rows_of(m)
    ref = swing_reference(rows, alpha=alpha, user_weight=user_weight)
    sharing = [len(rows[u] & rows[v]) for u, v in combinations(sorted(rows), 2)]
    for block_triples, block_entries, threads in [(1, 1, True), (7, 25, False), (500, 60, True), (10**9, 10**9, False)]:
        pairs, stats = swing(m, alpha=alpha, user_weight=user_weight, top_k=10_000, block_triples=block_triples,
                             block_entries=block_entries, threads=threads)
        assert as_dict(pairs) == ref                                 # ==, not approx
        assert (stats.pairs, stats.pairs_used, stats.triples) == (
            sum(s >= 1 for s in sharing), sum(s >= 2 for s in sharing), sum(s for s in sharing if s >= 2))


def test_step_one_keys_that_need_small_user_blocks(monkeypatch):
    # a (pair, column) key must fit in _KEY_BITS: with 14 bits and 5 for the 30 columns, 512 // 40 users = 12 per block
    m = random_matrix(1, users=40, items=30, density=0.3)
    expected, _ = swing(m, top_k=10_000)
    monkeypatch.setattr(swing_module, "_KEY_BITS", 14)
    assert len(list(swing_module.pair_blocks(binarize(m), block_triples=10**9))) == 4
    got, _ = swing(m, top_k=10_000, block_triples=10**9)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert as_dict(got) == swing_reference(rows_of(m))


@pytest.mark.parametrize("seed", range(3))
def test_history_cap_is_swing_on_a_deterministic_sample(seed):
    m = random_matrix(seed, users=30, items=40, density=0.4)
    capped = binarize(m, max_history=5, seed=11)
    assert capped.getnnz(axis=1).max() <= 5
    assert (capped - capped.multiply(m)).nnz == 0                       # a subset of each history
    assert (binarize(m, max_history=5, seed=11) != capped).nnz == 0     # same seed, same sample
    assert (binarize(m, max_history=5, seed=12) != capped).nnz > 0
    got = as_dict(swing(m, max_history=5, seed=11, top_k=10_000)[0])
    ref = swing_reference(rows_of(capped))
    assert set(got) == set(ref) and max(abs(got[k] - ref[k]) for k in ref) < 1e-9


def test_top_k_keeps_the_highest_per_src_ties_by_index():
    m = random_matrix(5, users=60, items=25, density=0.3)
    full = swing_reference(rows_of(m))
    pairs, _ = swing(m, top_k=3)
    assert pairs.groupby("src").size().max() <= 3
    for src, group in pairs.groupby("src"):
        expected = sorted(((-v, j) for (i, j), v in full.items() if i == src))[:3]
        assert [(j, pytest.approx(-v)) for v, j in expected] == list(zip(group["dst"], group["score"], strict=True))


def test_user_side_is_the_transpose():
    m = random_matrix(2)
    users, _ = swing(m.T, top_k=10_000)
    assert as_dict(users) == pytest.approx(swing_reference(rows_of(m.T.tocsr())))


def test_deterministic():
    m = random_matrix(3, users=80, items=50)
    a, _ = swing(m, top_k=5, max_history=6, seed=1)
    b, _ = swing(m, top_k=5, max_history=6, seed=1)
    pd.testing.assert_frame_equal(a, b)


def test_columns_with_neighbours():
    m = matrix({0: [0, 1], 1: [0, 1, 2], 2: [0, 2], 3: [3], 4: [3, 4]}, 5)
    # 0, 1, 2 have neighbours; 3 has two users who share nothing else; 4 has one user
    assert columns_with_neighbours(m).tolist() == [0, 1, 2]


def test_bad_parameters():
    with pytest.raises(ValueError, match="alpha"):
        swing(random_matrix(0), alpha=0)
    with pytest.raises(ValueError, match="top_k"):
        swing(random_matrix(0), top_k=0)


def test_the_caps_drop_heavy_rows_and_keep_a_seeded_sample_of_each_columns_rows():
    rng = np.random.default_rng(3)
    dense = (rng.random((300, 40)) < 0.25).astype(np.float32)
    dense[:5] = 1                                            # five users with every item: above the row cap
    m = binarize(sp.csr_matrix(dense))
    c = capped(m, drop_rows_above=20, max_rows_per_column=30, seed=5)
    light = np.diff(m.indptr) <= 20
    assert c[:5].nnz == 0 and (np.diff(c.indptr)[~light] == 0).all()
    assert (c - c.multiply(m)).nnz == 0                     # only rows the matrix had
    per_column = np.asarray(m[light].sum(0)).ravel()
    assert np.array_equal(np.bincount(c.indices, minlength=40), np.minimum(per_column, 30))
    assert (capped(m, 20, 30, seed=5) != c).nnz == 0 and (capped(m, 20, 30, seed=6) != c).nnz > 0
    pairs, stats = swing(m, drop_rows_above=20, max_rows_per_column=30, seed=5)
    expected, _ = swing(c)
    pd.testing.assert_frame_equal(pairs, expected)
    assert stats.interactions == c.nnz
    with pytest.raises(ValueError, match="max_rows_per_column must be >= 2"):
        swing(m, max_rows_per_column=1)
