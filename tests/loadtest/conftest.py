"""Fixtures of the load-test tests: real HTTP servers on free loopback ports, run by uvicorn in a thread (the
gateway with the shipped ColBERT and a real local store, the cross-encoder fixture server on a tiny cross-encoder
graph, and a server that answers one request at a time after a fixed stall), and a small workload of real
catalogue rows. Nothing here exports with torch, so the fixtures take about a second."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from relevance_core.model_repository import resolve_model
from tests.conftest import REPO
from tests.ports import free_port

SHIPPED = REPO / "model_repository"

CATALOGUE = {
    "100001": "Simpson Strong-Tie 12-Gauge Angle",
    "100002": "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
    "100003": "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Stainless (Valve Not Included)",
    "100004": "Whirlpool 1.9 cu. ft. Over the Range Microwave in Bisque with Electronic Touch Controls",
    "100005": "Lithonia Lighting Quantum 2-Light Black LED Emergency Fixture Unit",
    "100006": "House of Fara 3/4 in. x 3 in. x 8 ft. MDF Fluted Casing",
    "100007": "Valley View Industries Metal Stakes (4-Pack)",
    "100008": "Toro Personal Pace Recycler 22 in. Variable Speed Self-Propelled Gas Lawn Mower",
}
QUERIES = ["angle bracket", "deck over", "rain shower head", "emergency light", "self propelled mower",
           "metal stakes", "mdf casing", "microwave over stove"]


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port in a daemon thread; ``url`` once started."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    loop="asyncio", lifespan="on", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class StallServer:
    """A raw ASGI app that answers one request at a time, each after ``delay`` seconds: its capacity is
    1/delay requests/s whatever the client does. ``arrivals`` are the monotonic times requests arrived."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrivals: list[float] = []
        self._lock: asyncio.Lock | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        self.arrivals.append(time.monotonic())
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            await asyncio.sleep(self.delay)
        body = b'{"ok": true}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="session")
def workload_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pairs TSV with the queries, catalogue TSV with CATALOGUE)."""
    root = tmp_path_factory.mktemp("workload")
    pairs = root / "pairs.tsv"
    uids = list(CATALOGUE)
    pairs.write_text("id\tquery\tproduct_uid\tproduct_title\trelevance\n" + "".join(
        f"{i}\t{q}\t{uids[i % len(uids)]}\t{CATALOGUE[uids[i % len(uids)]]}\t2.5\n" for i, q in enumerate(QUERIES)),
        encoding="utf-8")
    catalogue = root / "catalogue.tsv"
    catalogue.write_text("product_uid\tproduct_title\n" + "".join(f"{u}\t{t}\n" for u, t in CATALOGUE.items()),
                         encoding="utf-8")
    return pairs, catalogue


@pytest.fixture(scope="session")
def tiny_cross_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository whose ``cross/1`` is a tiny hand-built graph with the cross-encoder's interface
    (input_ids, attention_mask, token_type_ids → logit of Good: mean of embedded tokens, then a dot product) and
    the shipped tokenizer: the serving path of a cross-encoder, in milliseconds."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from relevance_core.model_repository import ServingMeta

    shipped = resolve_model(SHIPPED)
    rng = np.random.default_rng(0)
    vocab, dim = 30522, 8
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["types_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["mask_f", "types_f"], ["weights"]),
        helper.make_node("Unsqueeze", ["weights", "last"], ["weights3"]),
        helper.make_node("Mul", ["embedded", "weights3"], ["weighted"]),
        helper.make_node("ReduceMean", ["weighted", "axis1"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "head"], ["logit2"]),
        helper.make_node("Squeeze", ["logit2", "last"], ["logit"]),
    ]
    initializers = [numpy_helper.from_array(rng.normal(size=(vocab, dim)).astype(np.float32), "table"),
                    numpy_helper.from_array(rng.normal(size=(dim, 1)).astype(np.float32), "head"),
                    numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
                    numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = helper.make_graph(nodes, "tiny_cross", inputs,
                              [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch"])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    root = tmp_path_factory.mktemp("cross_repository")
    version = root / "cross" / "1"
    version.mkdir(parents=True)
    (root / "cross" / "config.pbtxt").write_text('name: "cross"\nplatform: "onnxruntime_onnx"\n', encoding="utf-8")
    onnx.save(model, str(version / "model.onnx"))
    shutil.copy(shipped.tokenizer_path, version / "tokenizer.json")
    meta = shipped.meta
    ServingMeta(family="cross", precision="fp32", query_len=meta.query_len, title_len=meta.title_len,
                pair_len=meta.pair_len, dim=dim, cls_id=meta.cls_id, sep_id=meta.sep_id, pad_id=meta.pad_id,
                ).save(version)
    return root


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The real gateway (the shipped int8 ColBERT, ONNX Runtime, a local store holding CATALOGUE, both caches
    off) on a loopback port."""
    from service.app import create_app
    from service.core.runtime import ColBERTModel, load_runtime_model
    from service.settings import Settings
    from service.store.codec import TokenCodec
    from service.store.local import LocalItemStore

    model = load_runtime_model(SHIPPED, threads=1)
    assert isinstance(model, ColBERTModel)
    root = tmp_path_factory.mktemp("index")
    store = LocalItemStore(root, model.version.label, TokenCodec.float32(model.meta.dim))
    store.put_many(dict(zip(CATALOGUE, model.item_tokens(list(CATALOGUE.values())), strict=True)))
    store.flush()
    store.activate()
    store.close()
    settings = Settings(model_repository=SHIPPED, store="local", store_dir=root,  # type: ignore[call-arg]
                        grpc_port=None, query_cache_mib=0, title_cache_mib=0)
    with ServerThread(create_app(settings)) as server:
        yield server


@pytest.fixture
def stall_server() -> Iterator[tuple[ServerThread, StallServer]]:
    app = StallServer(delay=0.1)
    with ServerThread(app) as server:
        yield server, app
