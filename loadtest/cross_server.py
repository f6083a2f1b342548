"""A minimal rerank server for an exported *cross-encoder* version, on the gateway's own stack (FastAPI under
uvicorn with uvloop/httptools, the gateway's rerank schemas, ONNX Runtime through ``service.core.runtime``).

The gateway (``relevance serve``) serves ColBERT only: ``service.lifecycle.load_model`` builds a ``ColBERTModel``, which
refuses a ``cross`` version, and the engine is MaxSim over cached item embeddings. This server exists so that the
load test can measure the cross-encoder path under the same conditions; it is a benchmark fixture, not a product
route. One request's pairs are one ONNX Runtime call; requests take turns on one inference thread (FIFO), as the
gateway's encoder thread does.

    python -m loadtest.cross_server --repository work/loadtest/cross-repository --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from service.api.protocol import RerankDocument, RerankRequest, RerankResponse, RerankResult


def create_cross_app(repository: Path, *, model_name: str = "cross", version: int | None = None, threads: int = 0,
                     max_documents: int = 1000) -> FastAPI:
    """``POST /v1/rerank`` (and ``/rerank``) scoring every (query, document) pair with the cross-encoder;
    ``GET /readyz`` once the model is loaded."""
    from service.core.runtime import CrossEncoderModel, load_runtime_model

    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = load_runtime_model(repository, model=model_name, version=version, threads=threads)
        if not isinstance(model, CrossEncoderModel):
            raise SystemExit(f"{repository}: model {model_name!r} is not a cross-encoder")
        state["model"] = model
        state["executor"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-encoder")
        try:
            yield
        finally:
            state["executor"].shutdown(wait=False)  # type: ignore[attr-defined]

    app = FastAPI(title="cross-encoder rerank (load-test fixture)", lifespan=lifespan)

    async def rerank(body: RerankRequest) -> RerankResponse:
        model = state.get("model")
        if not isinstance(model, CrossEncoderModel):
            raise HTTPException(503, "the model is not loaded yet")
        if len(body.documents) > max_documents:
            raise HTTPException(422, f"at most {max_documents} documents per request")
        texts = [d if isinstance(d, str) else d.text or "" for d in body.documents]
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        scores = await loop.run_in_executor(state["executor"],  # type: ignore[arg-type]
                                            lambda: model.score_pairs([body.query] * len(texts), texts,
                                                                      batch_size=max(1, len(texts))))
        ranked = sorted(enumerate(scores.tolist()), key=lambda x: -x[1])
        ranked = ranked[: body.top_n] if body.top_n else ranked
        return RerankResponse(
            id=uuid.uuid4().hex, model=model.version.label,
            results=[RerankResult(index=i, relevance_score=s,
                                  document=RerankDocument(text=texts[i]) if body.return_documents else None)
                     for i, s in ranked],
            meta={"timings_ms": {"total": round((time.perf_counter() - started) * 1000, 3)}})

    app.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True)(rerank)
    app.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True)(rerank)

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        ready = isinstance(state.get("model"), CrossEncoderModel)
        return JSONResponse({"status": "ready" if ready else "loading"}, status_code=200 if ready else 503)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, required=True, help="model repository holding a cross model")
    parser.add_argument("--model-name", default="cross")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    import uvicorn

    app = create_cross_app(args.repository, model_name=args.model_name, version=args.version, threads=args.threads)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning")


if __name__ == "__main__":
    main()
