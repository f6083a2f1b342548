"""``relevance index`` on the tiny exported ColBERT: catalogue → item store (local and a real Redis), resuming,
activation, and the codec's ROC-AUC cost."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from export.indexer import IndexingError, evaluate_codec, index_catalogue
from relevance.cli import app
from relevance_core.data import Pair, Product, build_catalogue, load_pairs, write_catalogue, write_pairs
from service.core.maxsim import maxsim
from service.core.runtime import ColBERTModel, TokenEmbeddings, load_runtime_model
from service.store import StoreError, pad_items
from service.store import local as local_store
from service.store import redis as redis_store
from service.store.codec import TokenCodec
from service.store.local import LocalItemStore
from service.store.redis import RedisItemStore
from tests.service.conftest import RedisServer


class CountingModel(ColBERTModel):
    """The real runtime model, counting the titles it encodes."""

    def __init__(self, model: ColBERTModel) -> None:
        super().__init__(model.version, model.backend)
        self.encoded = 0

    def encode_items(self, titles: Sequence[str]) -> TokenEmbeddings:
        self.encoded += len(titles)
        return super().encode_items(titles)


class FailingStore(RedisItemStore):
    """A Redis store whose connection 'drops' on the third write."""

    writes = 0

    def put_many(self, items: object) -> None:  # type: ignore[override]
        self.writes += 1
        if self.writes == 3:
            raise StoreError("redis: connection lost (simulated)")
        super().put_many(items)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def vendored_sample(vendored_pairs: Path) -> list[Pair]:
    return load_pairs(vendored_pairs)[:400]


@pytest.fixture(scope="module")
def products(vendored_sample: list[Pair]) -> list[Product]:
    catalogue = build_catalogue(vendored_sample)[:40]
    assert len(catalogue) == 40
    return catalogue


@pytest.fixture(scope="module")
def model(tiny_model_repository: Path) -> ColBERTModel:
    loaded = load_runtime_model(tiny_model_repository, threads=1)
    assert isinstance(loaded, ColBERTModel)
    return loaded


def test_index_local_then_resume(tmp_path: Path, products: list[Product], model: ColBERTModel) -> None:
    counting = CountingModel(model)
    root = tmp_path / "index"
    with_duplicate = [*products[:25], Product(products[0].product_uid, "another title for the same uid")]
    store = LocalItemStore(root, model.version.label)
    first = index_catalogue(with_duplicate, counting, store, batch_size=8, codec_sample_items=12)
    store.close()
    assert (first["items"], first["skipped"], first["total"], first["codec"]) == (25, 0, 25, "sq8")
    assert first["bytes_per_item"] == pytest.approx(4 + first["tokens_per_item"] * (128 + 4), rel=0.01)
    assert local_store.active_version(root) == model.version.label
    assert counting.encoded == 25

    again = LocalItemStore(root, model.version.label)
    second = index_catalogue(products, counting, again, batch_size=8, flush_every=8)
    assert (second["items"], second["skipped"], second["total"]) == (15, 25, 40)
    assert counting.encoded == 40  # the 25 stored titles were not encoded again
    assert again.pending == 0

    reader = LocalItemStore(root, model.version.label)
    ids = [p.product_uid for p in products]
    expected = model.item_tokens([p.product_title for p in products])
    for got, want in zip(reader.get_many(ids), expected, strict=True):
        assert got is not None
        np.testing.assert_array_equal(got.token_ids, want.token_ids)
        np.testing.assert_array_equal(got.mask, want.mask)
        cosine = (got.vectors * want.vectors).sum(1) / np.linalg.norm(got.vectors, axis=1)
        assert cosine.min() >= 0.99
    reader.close()
    again.close()


def test_resume_after_the_store_failed_mid_way(redis_server: RedisServer, products: list[Product],
                                                model: ColBERTModel) -> None:
    counting = CountingModel(model)
    failing = FailingStore(redis_server.url, "crash", model.version.label)
    with pytest.raises(StoreError, match="connection lost"):
        index_catalogue(products, counting, failing, batch_size=8, codec_sample_items=8)
    failing.close()
    assert redis_store.active_version(redis_server.url, "crash") is None  # an unfinished index is not activated
    encoded_before = counting.encoded

    store = RedisItemStore(redis_server.url, "crash", model.version.label)
    summary = index_catalogue(products, counting, store, batch_size=8)
    assert (summary["skipped"], summary["items"], summary["total"]) == (16, 24, 40)  # two batches had landed
    assert counting.encoded - encoded_before == 24
    assert redis_store.active_version(redis_server.url, "crash") == model.version.label
    store.close()


def test_a_stored_codec_of_another_kind_is_refused(tmp_path: Path, products: list[Product],
                                                   model: ColBERTModel) -> None:
    store = LocalItemStore(tmp_path, model.version.label)
    index_catalogue(products[:4], model, store, codec="float32")
    with pytest.raises(IndexingError, match="encoded with float32, not sq8"):
        index_catalogue(products, model, store, codec="sq8")
    store.close()


def test_evaluate_codec_reports_the_auc_cost(tmp_path: Path, vendored_sample: list[Pair],
                                             model: ColBERTModel) -> None:
    pairs = tmp_path / "pairs.tsv"
    write_pairs(pairs, vendored_sample[:200])
    sample = np.concatenate([item.vectors for item in model.item_tokens([p.product_title for p in
                                                                           vendored_sample[:64]])])
    sq8 = evaluate_codec(model, pairs, TokenCodec.train_sq8(sample))
    assert sq8["n"] == 200 and 0.0 <= sq8["roc_auc_codec"] <= 1.0
    assert abs(sq8["roc_auc_delta"]) < 0.01 and sq8["max_abs_score_delta"] < 0.01
    exact = evaluate_codec(model, pairs, TokenCodec.float32(model.meta.dim))
    assert exact["roc_auc_delta"] == 0.0 and exact["roc_auc_float32"] == sq8["roc_auc_float32"]


def _index_cli(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["index", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_index_cli_redis_and_local(tmp_path: Path, redis_server: RedisServer, products: list[Product],
                                   vendored_sample: list[Pair], tiny_model_repository: Path) -> None:
    catalogue, pairs = tmp_path / "catalogue.tsv", tmp_path / "pairs.tsv"
    write_catalogue(catalogue, products)
    write_pairs(pairs, vendored_sample[:100])
    common = ["--catalog", str(catalogue), "--model-repository", str(tiny_model_repository), "--batch-size", "16"]
    sq8 = _index_cli(*common, "--redis", redis_server.url, "--namespace", "cli", "--evaluate", str(pairs))
    assert (sq8["items"], sq8["codec"], sq8["model_version"]) == (40, "sq8", "colbert:1")
    assert sq8["store"] == {"kind": "redis", "url": redis_server.url, "namespace": "cli"}
    assert abs(sq8["evaluation"]["roc_auc_delta"]) < 0.02  # type: ignore[index]
    assert redis_store.active_version(redis_server.url, "cli") == "colbert:1"

    exact = _index_cli(*common, "--store-dir", str(tmp_path / "index"), "--codec", "float32", "--limit", "10",
                       "--no-activate")
    assert (exact["items"], exact["codec"], exact["activated"]) == (10, "float32", False)
    assert local_store.active_version(tmp_path / "index") is None
    assert exact["bytes_per_item"] > 3.8 * sq8["bytes_per_item"]  # type: ignore[operator]

    refused = CliRunner().invoke(app, ["index", *common, "--store-dir", str(tmp_path / "index")])
    assert refused.exit_code == 2 and "encoded with float32" in refused.output


def test_a_pq32_index_is_served_end_to_end_from_the_local_and_redis_stores(
        tmp_path: Path, redis_server: RedisServer, products: list[Product], tiny_model_repository: Path,
        model: ColBERTModel) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.ports import free_port

    catalogue = tmp_path / "catalogue.tsv"
    write_catalogue(catalogue, products)
    common = ["--catalog", str(catalogue), "--model-repository", str(tiny_model_repository), "--codec", "pq32"]
    local = _index_cli(*common, "--store-dir", str(tmp_path / "index"))
    remote = _index_cli(*common, "--redis", redis_server.url, "--namespace", "pq")
    for summary in (local, remote):
        assert summary["codec"] == "pq32" and summary["items"] == 40
        assert summary["bytes_per_item"] <= 4 + summary["tokens_per_item"] * (32 + 4) + 4  # type: ignore[operator]
    query, ids = "corner brace", [p.product_uid for p in products]
    # what the gateway must serve: MaxSim over the stored (pq32-decoded) tokens, calibrated
    reader = LocalItemStore(tmp_path / "index", model.version.label)
    stored = reader.get_many(ids)
    reader.close()
    vectors, mask = pad_items([item for item in stored if item is not None], model.meta.dim)
    q = model.encode_queries([query])
    expected = model.probability(maxsim(q.vectors, q.mask, vectors, mask))
    for store in ({"store": "local", "store_dir": str(tmp_path / "index")},
                  {"store": "redis", "redis_url": redis_server.url, "namespace": "pq"}):
        settings = Settings.model_validate({"model_repository": str(tiny_model_repository), "grpc_port": free_port(),
                                            "teacher_local": False, "encode_missing": False, **store})
        with TestClient(create_app(settings)) as client:
            body = client.post("/v1/score", json={"query": query, "items": [{"id": i} for i in ids]}).json()
        assert {s["source"] for s in body["scores"]} == {"store"}, store
        np.testing.assert_allclose([s["score"] for s in body["scores"]], expected, atol=1e-5, err_msg=str(store))
