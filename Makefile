# The two commands a newcomer needs:  make demo  and  make test
# Each creates .venv (Python >= 3.9 with venv) and installs the project in it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo demo-onedir test test-fast test-windows bench setup clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

setup: $(VENV)/bin/python
	$(PY) -m pip install --quiet ".[test]"
	$(PY) -m pip install --quiet --no-deps --force-reinstall .

demo: setup
	$(PY) example_app/demo.py

demo-onedir: setup
	$(PY) example_app/demo.py --onedir

# Everything, frozen-app builds included (what CI runs, through .ci/run).
test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Everything but the slow tiers (marker e2e: frozen-app builds and kill -9 trials;
# the Windows tier is e2e too).
test-fast: setup
	$(VENV)/bin/pytest -m "not e2e" $(PYTEST_ARGS)

# The Windows tier alone (part of make test): Wine, the embedded CPython and the
# Windows wheels set up by tests/windows/setup_wine.sh (as root: apt-get install
# wine), example_app built for windows-amd64 under Wine, run as Windows processes.
test-windows: setup
	$(VENV)/bin/pytest -m windows tests/windows $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/patch_bench.py
	$(PY) benchmarks/update_bench.py
	$(PY) benchmarks/pyinstaller_bench.py
	$(PY) benchmarks/folder_bench.py
	$(PY) benchmarks/field_bench.py

clean:
	rm -rf $(VENV) build *.egg-info public
