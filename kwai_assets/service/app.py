"""The HTTP API over the online store, and the explorer page.

Starlette on uvicorn: the API is a handful of JSON routes and one static page, so the toolkit that FastAPI and
Dagster's own webserver are built on is enough, adds no dependency, and keeps each route's validation in plain
sight. Routes are plain functions, run in Starlette's thread pool; every read of the online store resolves the
live version and its keys in one Lua call, so a request sees one version while a new one is published.

Raw ids in and out. An unknown id is a 404 and a bad parameter a 400, each with a JSON `detail` that says why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kwai_assets.io.online_store import OnlineStore
from kwai_assets.service.lookup import SIMILAR_CHANNEL, NotFound, WarehouseLookup

STATIC = Path(__file__).parent / "static"
MAX_K = 500                  # the most items a request may ask for
CHANNEL_DEPTH = 20           # candidates shown per recall channel on the explorer


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise HTTPException(400, f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


def _no_live_version(store: OnlineStore, where: str) -> HTTPException:
    return HTTPException(503, f"no live online-store version under prefix {store.prefix!r} at {where}; "
                              "materialize online_store")


def create_app(lookup: WarehouseLookup, store: OnlineStore, redis_label: str) -> Starlette:
    """The app over one warehouse (`lookup`) and one online store; `redis_label` is its URL without secrets."""

    def live_list(raw_user: str) -> tuple[int, list[tuple[str, float]]]:
        version, lists = store.get_lists([raw_user])
        if version is None:
            raise _no_live_version(store, redis_label)
        if lists[0] is None:
            raise HTTPException(404, f"unknown user {raw_user!r}: no recommendations in online-store version "
                                     f"{version}")
        return version, lists[0]

    def health(request: Request) -> JSONResponse:
        version, meta = store.info()
        if version is None:
            raise _no_live_version(store, redis_label)
        runs = {k.removeprefix("run:"): v for k, v in meta.items() if k.startswith("run:")}
        counts = {k: int(meta[k]) for k in ("users", "items", "recommendations", "dim") if k in meta}
        return JSONResponse({"status": "ok", "version": version, **counts,
                             "published_at": float(meta["published_at"]) if "published_at" in meta else None,
                             "runs": runs, "redis": redis_label, "warehouse": str(lookup.warehouse.root)})

    def recommendations(request: Request) -> JSONResponse:
        user = request.path_params["user"]
        k = _int(request, "k", 10, 1, MAX_K)
        version, items = live_list(user)
        return JSONResponse({"user": user, "version": version,
                             "items": [{"item": i, "score": s} for i, s in items[:k]]})

    def vector(request: Request) -> JSONResponse:
        user = request.path_params["user"]
        version, vectors = store.get_vectors("user", [user])
        if version is None:
            raise _no_live_version(store, redis_label)
        if vectors[0] is None:
            raise HTTPException(404, f"unknown user {user!r}: no vector in online-store version {version}")
        return JSONResponse({"user": user, "version": version, "dim": len(vectors[0]),
                             "vector": vectors[0].tolist()})

    def similar(request: Request) -> JSONResponse:
        item = request.path_params["item"]
        k = _int(request, "k", 10, 1, MAX_K)
        channel = request.query_params.get("channel", SIMILAR_CHANNEL)
        found = lookup.similar(item, k, channel)
        return JSONResponse({"item": item, "channel": channel,
                             "items": [{"item": i, "score": s} for i, s in found]})

    def profile(request: Request) -> JSONResponse:
        user = request.path_params["user"]
        return JSONResponse({"user": user, **lookup.profile(lookup.user_idx(user))})

    def users(request: Request) -> JSONResponse:
        limit = _int(request, "limit", 20, 1, MAX_K)
        return JSONResponse({"users": lookup.search_users(request.query_params.get("q", ""), limit)})

    def explorer_data(request: Request) -> JSONResponse:
        return JSONResponse(explore(lookup, live_list, request.path_params["user"]))

    def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "explorer.html")

    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    routes = [
        Route("/", lambda request: RedirectResponse("/explorer")),
        Route("/health", health),
        Route("/users", users),
        Route("/users/{user}/recommendations", recommendations),
        Route("/users/{user}/vector", vector),
        Route("/users/{user}/profile", profile),
        Route("/users/{user}/explorer", explorer_data),
        Route("/items/{item}/similar", similar),
        Route("/explorer", page),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={NotFound: not_found, HTTPException: http_error})


def explore(lookup: WarehouseLookup, live_list, raw_user: str) -> dict[str, Any]:
    """Everything the explorer page shows for one user: train check-ins by place, the LLM profile, each recall
    channel's candidates, the served list, and the held-out test items (marked wherever they appear)."""
    user_idx = lookup.user_idx(raw_user)
    version, served = live_list(raw_user)
    test = lookup.interactions(user_idx, "test")
    test_items = set(test["item_idx"].astype(int))
    served_idx = [lookup.ids("item").to_idx.get(i, 0) for i, _ in served]   # 0: an id the warehouse lacks
    kept = set(served_idx)

    def described(idx: list[int], **extra: list) -> list[dict[str, Any]]:
        rows = lookup.describe(idx)
        for n, (row, i) in enumerate(zip(rows, idx, strict=True)):
            row.update(rank=n + 1, in_test=i in test_items, **{k: v[n] for k, v in extra.items()})
        return rows

    recommendations = described(served_idx, score=[s for _, s in served])
    for row, (raw, _) in zip(recommendations, served, strict=True):
        row["item"] = raw                # the served raw id, described or not

    try:
        profile = lookup.profile(user_idx)
    except NotFound:
        profile = {"prompt": None, "document": None, "profile": None}
    train = lookup.interactions(user_idx, "train")
    return {
        "user": raw_user, "version": version, "profile": profile,
        "places": lookup.places(user_idx, "train"),
        "test_places": lookup.places(user_idx, "test"),
        "history": described(train["item_idx"].astype(int).tolist()[-CHANNEL_DEPTH:][::-1]),
        "recommendations": recommendations,
        "channels": {name: described(idx, kept=[i in kept for i in idx], channel_rank=ranks)
                     for name, (idx, ranks) in lookup.candidates(user_idx, CHANNEL_DEPTH).items()},
        "test": described(test_order := test["item_idx"].drop_duplicates().astype(int).tolist(),
                          served=[i in kept for i in test_order]),
    }
