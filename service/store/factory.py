"""Open the configured item store for the served model version."""

from __future__ import annotations

from service.settings import Settings
from service.store import ItemStore
from service.store.codec import TokenCodec


def open_store(settings: Settings, model_version: str, dim: int) -> ItemStore:
    """Redis when configured (``store=redis`` or a Redis URL with ``store=auto``; a Redis Cluster for a
    ``redis+cluster://`` URL), else the local store under ``store_dir``. Items written before any index exists
    (PUT /v1/items, write-back) use 8-bit scalar quantisation over [-1, 1], which fits unit-length embeddings
    without training."""
    fallback = TokenCodec.sq8_unit(dim)
    if settings.store_kind == "redis":
        from service.store.redis import open_redis_store

        if not settings.redis_url:
            raise ValueError("store=redis needs RELEVANCE_REDIS_URL (or REDIS_URL)")
        return open_redis_store(settings.redis_url, settings.namespace, model_version, fallback)
    from service.store.local import LocalItemStore

    return LocalItemStore(settings.store_dir, model_version, fallback, sync=settings.store_sync)


def read_active(settings: Settings) -> str | None:
    """The model version the configured store marks active (``relevance index`` moves it), None when none is."""
    if settings.store_kind == "redis":
        from service.store.redis import active_version as redis_active

        if not settings.redis_url:
            raise ValueError("store=redis needs RELEVANCE_REDIS_URL (or REDIS_URL)")
        return redis_active(settings.redis_url, settings.namespace)
    from service.store.local import active_version as local_active

    return local_active(settings.store_dir)
