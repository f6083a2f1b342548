"""The online gateway (FastAPI + gRPC over cached item token embeddings); built by the gateway issue."""
