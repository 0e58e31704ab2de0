# convmem — the two commands: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export XDG_RUNTIME_DIR ?= /tmp

.PHONY: serve test lint bench venv clean espeak proto

venv: $(STAMP)

# torch first, pinned: its CPU build is what this machine class has on disk, and pinning it
# stops sentence-transformers from pulling a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,eval,audio,milvus,opensearch]'
	$(VENV)/bin/convmem fetch-models
	rm -f $(VENV)/.installed-*
	touch $@

serve: $(STAMP)
	$(VENV)/bin/convmem serve

# The audio tests speak their test sentences with espeak-ng (Debian package).
espeak:
	@command -v espeak-ng >/dev/null || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng; \
	} || { echo "make test needs espeak-ng: sudo apt-get install espeak-ng" >&2; exit 1; }

test: $(STAMP) espeak
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m eval.bench --out docs/bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The gRPC code in query_service/grpc_gen, from proto/convmem/v1/memory.proto (checked in;
# tests/query_service/test_grpc_gen.py fails when it is not current).
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iquery_service/grpc_gen=proto/convmem/v1 \
	  --python_out=. --pyi_out=. --grpc_python_out=. proto/convmem/v1/memory.proto
