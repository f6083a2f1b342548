"""gRPC API (relevance.v1.Relevance/Score) served beside HTTP by the same engine. ``relevance_pb2*`` are
generated from ``relevance.proto`` by ``make proto`` and committed."""
