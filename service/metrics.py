"""Prometheus metrics of the gateway (prometheus-client). Names carry their unit; the Grafana dashboard and
the SRE docs use exactly these names. One registry per app, so tests can build several apps in a process."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
STAGES = ("tokenize", "queue", "encode", "fetch", "encode_items", "maxsim")
SCORE_BUCKETS = tuple(round(0.05 * k, 2) for k in range(1, 21))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("relevance_http_requests_total", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("relevance_http_request_duration_seconds", "HTTP request latency.",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.grpc_requests = Counter("relevance_grpc_requests_total", "gRPC requests by method and code.",
                                     ["method", "code"], registry=r)
        self.grpc_latency = Histogram("relevance_grpc_request_duration_seconds", "gRPC request latency.",
                                      ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("relevance_stage_duration_seconds", "Time per scoring stage (tokenize, queue, "
                               "encode, fetch, encode_items, maxsim).", ["stage"], buckets=STAGE_BUCKETS,
                               registry=r)
        self.batch_size = Histogram("relevance_encoder_batch_size", "Queries per encoder call.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.queue_depth = Gauge("relevance_encoder_queue_depth", "Queries waiting for the encoder.", registry=r)
        self.query_cache = Counter("relevance_query_cache_requests_total", "Query-embedding cache lookups.",
                                   ["result"], registry=r)
        self.title_cache = Counter("relevance_title_cache_requests_total", "Lookups of titles encoded on the fly "
                                   "in their cache.", ["result"], registry=r)
        self.cache_bytes = Gauge("relevance_cache_size_bytes", "Bytes held by a cache of embeddings (bounded by "
                                 "query_cache_mib, title_cache_mib).", ["cache"], registry=r)
        self.items_scored = Counter("relevance_items_scored_total", "Items scored, by where their embeddings came "
                                    "from (store, title).", ["source"], registry=r)
        self.item_errors = Counter("relevance_item_errors_total", "Items reported with an error instead of a "
                                   "score.", ["reason"], registry=r)
        self.store_errors = Counter("relevance_store_errors_total", "Failed store operations.", ["operation"],
                                    registry=r)
        self.overloaded = Counter("relevance_overloaded_total", "Requests refused because the encoder queue was "
                                  "full.", registry=r)
        self.explain = Counter("relevance_explain_requests_total", "Explanation requests by mode (decision, "
                               "teacher, page) and outcome.", ["mode", "outcome"], registry=r)
        self.explain_latency = Histogram("relevance_explain_duration_seconds", "Explanation latency by mode.",
                                         ["mode"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                                            30, 60), registry=r)
        self.model = Info("relevance_model", "The served model version, backend and store.", registry=r)
        self.ready = Gauge("relevance_ready", "1 when /readyz answers 200 (model loaded, store answering, the "
                           "served version indexed).", registry=r)
        # --- reliability: admission control and the version switch ---------------------------------------
        self.shed = Counter("relevance_shed_total", "Requests refused by admission control (429 + Retry-After), "
                            "by reason (queue_full, queue_timeout).", ["reason"], registry=r)
        self.abandoned = Counter("relevance_abandoned_total", "Requests whose client left before the answer, by "
                                 "stage (queued: never run; running: cancelled).", ["stage"], registry=r)
        self.in_flight = Gauge("relevance_requests_in_flight", "Scoring requests being processed.", registry=r)
        self.queued = Gauge("relevance_requests_queued", "Scoring requests waiting for admission.", registry=r)
        self.version_switches = Counter("relevance_version_switches_total", "Switches to the version the store "
                                        "marks active, by outcome (ok, failed).", ["outcome"], registry=r)
        # --- the shadow teacher (service.shadow): teacher-student agreement on sampled live pairs --------------
        self.shadow_pairs = Counter("relevance_shadow_pairs_total", "Scored pairs sampled for the shadow teacher, "
                                    "by outcome (queued; dropped: the queue was full; no_title: no title to show "
                                    "the teacher).", ["outcome"], registry=r)
        self.shadow_judgements = Counter("relevance_shadow_judgements_total", "Shadow teacher calls by outcome (ok, "
                                         "unscored, unavailable, teacher_error).", ["outcome"], registry=r)
        self.shadow_comparisons = Counter("relevance_shadow_comparisons_total", "Shadow judgements compared with "
                                          "the student's label, by result (agree, disagree).", ["result"],
                                          registry=r)
        self.shadow_score = Histogram("relevance_shadow_score", "Scores of the shadow pairs: the teacher's (eq. 4) "
                                      "and the student's, by model (teacher, student).", ["model"],
                                      buckets=SCORE_BUCKETS, registry=r)
        self.shadow_queue_depth = Gauge("relevance_shadow_queue_depth", "Sampled pairs waiting for the shadow "
                                        "teacher.", registry=r)
        for outcome in ("queued", "dropped", "no_title"):
            self.shadow_pairs.labels(outcome)
        for outcome in ("ok", "unscored", "unavailable", "teacher_error"):
            self.shadow_judgements.labels(outcome)
        for result in ("agree", "disagree"):
            self.shadow_comparisons.labels(result)
        for model in ("teacher", "student"):
            self.shadow_score.labels(model)
        for reason in ("queue_full", "queue_timeout"):
            self.shed.labels(reason)
        for stage in ("queued", "running"):
            self.abandoned.labels(stage)
        for outcome in ("ok", "failed"):
            self.version_switches.labels(outcome)
        for operation in ("get", "put"):  # so that error-rate queries and alerts have a series before any error
            self.store_errors.labels(operation)
        for stage in STAGES:
            self.stage.labels(stage)
        for result in ("hit", "miss"):
            self.query_cache.labels(result)
            self.title_cache.labels(result)
        for cache in ("query", "title"):
            self.cache_bytes.labels(cache)
        for source in ("store", "title"):
            self.items_scored.labels(source)


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """(body, content type) of ``/metrics``: the Prometheus text format, the same on the HTTP and metrics ports."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsServer:
    """``/metrics`` alone on its own port (``metrics_port``, no API key), in a daemon thread: GET and HEAD, 404
    for every other path. Binding fails with OSError when the port is taken (no SO_REUSEPORT)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def _answer(self, head: bool) -> None:
                if self.path.split("?", 1)[0] == "/metrics":
                    status, (body, content_type) = 200, exposition(registry)
                else:
                    status, body, content_type = 404, b"not found: metrics are at /metrics\n", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not logged
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
