# fastdeberta developer tasks. Every target that needs Python builds its own virtual environment
# (.venv) first, so a fresh clone needs only python3, make and access to PyPI.
#
#   make demo      train a tiny DeBERTa on this machine's UI strings, then fill-mask / embed / info with it
#   make test      the default test suite (slow tests excluded)
#   make test-all  every test, slow ones included
#   make fuzz      the property-based fuzz suite, long profile (FASTDEBERTA_FUZZ=long: random seeds, 25x examples)
#   make lint      ruff
#   make bench     benchmarks/run.py: the full speed/memory/accuracy benchmark (BENCH_ARGS=--quick, --json F)
#   make bench-smoke  the benchmark on a tiny model (under a minute): checks that the script runs
#   make clean     remove the venv, caches and demo output

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch goes in first and pinned: this version is available as a CPU wheel; letting pip resolve
# "torch>=2.2,<3" on its own may pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv browser test test-all fuzz lint demo bench bench-smoke clean help

help:
	@sed -n '4,12p' Makefile

venv: $(STAMP)

# Re-install only when the venv is missing or the package metadata changed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "'$(PYTHON) -m venv' failed; on Debian/Ubuntu install it with: apt-get install python3-venv"; exit 1; }
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"
	@touch $(STAMP)

# pytest exit code 5 ("no tests collected") is not treated as a failure.
define run_pytest
	@rc=0; $(PY) -m pytest -q $(1) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; rc=0; fi; \
	exit $$rc
endef

# The attention page test runs in a real browser: install Debian's chromium when it is missing and we
# are root (otherwise, or if apt-get fails, that test is skipped and says why).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
		echo "chromium is not installed: the browser test of the attention page will be skipped"; }

test: venv browser
	$(call run_pytest,)

test-all: venv browser
	$(call run_pytest,-m "")

fuzz: venv
	FASTDEBERTA_FUZZ=long $(PY) -m pytest -q tests/test_fuzz_*.py -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check fastdeberta tests $(wildcard benchmarks)

demo: venv
	$(PY) -m fastdeberta.demo $(DEMO_ARGS)

bench: venv
	$(PY) benchmarks/run.py $(BENCH_ARGS)

bench-smoke: venv
	$(PY) benchmarks/run.py --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
