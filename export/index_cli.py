"""``relevance index``: the catalogue's item token embeddings into Redis or the local store (see
:mod:`export.indexer`). Heavy modules are imported inside the command."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from export.cli import DEFAULT_REPOSITORY
from relevance_core.console import fail
from relevance_core.data import PairsFileError, derived_dir, load_catalogue
from relevance_core.paths import REPO_ROOT

DEFAULT_CATALOGUE = derived_dir() / "catalogue.tsv"
DEFAULT_STORE_DIR = REPO_ROOT / "data" / "index"  # the gateway's default store_dir


class CodecChoice(StrEnum):
    sq8 = "sq8"
    pq32 = "pq32"
    float32 = "float32"


def index(
    catalog: Annotated[Path, typer.Option(help="Catalogue TSV (product_uid, product_title).")] = DEFAULT_CATALOGUE,
    model_repository: Annotated[Path, typer.Option(help="Triton-layout model repository (its colbert model).")] = (
        DEFAULT_REPOSITORY),
    version: Annotated[int | None, typer.Option(min=1, help="Model version (default: the highest).")] = None,
    redis: Annotated[str | None, typer.Option(
        envvar="REDIS_URL", help="Redis URL (e.g. redis://127.0.0.1:6379/0; redis+cluster://HOST:PORT for a Redis "
                                 "Cluster); without it, the local store.")] = None,
    store_dir: Annotated[Path, typer.Option(help="Local store directory (without --redis).")] = DEFAULT_STORE_DIR,
    namespace: Annotated[str, typer.Option(help="Redis key prefix: <namespace>:<model version>:<id>.")] = "relevance",
    codec: Annotated[CodecChoice, typer.Option(help="sq8 (8-bit scalar, 4x smaller than float32), pq32 (product "
                                                    "quantisation, 32 bytes per token, 16x smaller) or float32 "
                                                    "(exact).")] = CodecChoice.sq8,
    batch_size: Annotated[int, typer.Option(min=1, help="Titles per encoder call.")] = 64,
    limit: Annotated[int | None, typer.Option(min=1, help="Index only the first N products.")] = None,
    evaluate: Annotated[Path | None, typer.Option(
        help="Labelled pairs TSV: ROC-AUC with the stored codec vs float32 item embeddings.")] = None,
    activate: Annotated[bool, typer.Option(help="Point the store's active version at this model version.")] = True,
) -> None:
    """Encode catalogue titles with the ColBERT item encoder into the item store; resumable (ids already stored
    for the model version are skipped). The last line printed is the JSON summary."""
    from export.indexer import IndexingError, evaluate_codec, index_catalogue
    from relevance_core.model_repository import ModelRepositoryError
    from service.core.runtime import ColBERTModel, load_runtime_model
    from service.store import StoreError

    store: Any = None
    try:
        products = load_catalogue(catalog)[:limit]
        model = load_runtime_model(model_repository, version=version)
        if not isinstance(model, ColBERTModel):
            raise fail(f"--model-repository {str(model_repository)!r}: the served model is not a colbert model")
        label = model.version.label
        if redis is not None:
            from service.store.redis import open_redis_store

            store = open_redis_store(redis, namespace, label)
            where: dict[str, Any] = {"kind": "redis-cluster" if store.cluster else "redis", "url": store.url,
                                     "namespace": namespace}
        else:
            from service.store.local import LocalItemStore

            store = LocalItemStore(store_dir, label)
            where = {"kind": "local", "directory": str(store_dir)}
        summary = index_catalogue(products, model, store, codec=codec.value, batch_size=batch_size,  # type: ignore[arg-type]
                                  activate=activate, show_progress=sys.stderr.isatty())
        summary["store"] = where
        stored = store.stored_codec()
        if evaluate is not None and stored is not None:
            summary["evaluation"] = evaluate_codec(model, evaluate, stored, show_progress=sys.stderr.isatty())
    except (PairsFileError, ModelRepositoryError, StoreError, IndexingError) as exc:
        raise fail(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    typer.echo(f"indexed {summary['items']} items ({summary['skipped']} already stored) of {label} in "
               f"{summary['seconds']} s", err=True)
    print(json.dumps(summary))
