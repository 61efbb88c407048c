# capgym: `make demo` runs the quick start, `make test` runs the tests. Both create .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORE   := $(VENV)/.core

.PHONY: install core demo test test-slow bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# the CPU build of torch first (a newer or unpinned torch would pull a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,bench,rllib]"
	touch $(STAMP)

# the compiled modules (envs/world/_core.pyx, metrics/_wgl.pyx), rebuilt in place when a source changes
$(CORE): envs/world/_core.pyx metrics/_wgl.pyx setup.py $(STAMP)
	$(PY) setup.py -q build_ext --inplace
	touch $(CORE)

install: $(STAMP) $(CORE)

core: $(CORE)

demo: install
	$(VENV)/bin/capgym run configs/quickstart.yaml

# the fast suite on two workers, then the tests that start Ray on their own (live runs keep real time)
# (CAPGYM_REQUIRE_CORE: a test fails if the compiled core did not build)
test: install
	CAPGYM_REQUIRE_CORE=1 $(PY) -m pytest -q -n 2 -m "not slow and not ray"
	CAPGYM_REQUIRE_CORE=1 $(PY) -m pytest -q -m "ray and not slow"

test-slow: install
	$(PY) -m pytest -q -n 2 --dist loadgroup -m slow

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache envs/world/_core.c envs/world/_core.*.so metrics/_wgl.c metrics/_wgl.*.so
