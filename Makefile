# Two commands on a fresh machine:
#   make demo   set everything up (.venv) and run ingest -> train -> predict -> motifs on example_data/
#   make test   set everything up (.venv) and run the test suite
#   make package-check   build the sdist and wheel, twine-check them, install the wheel into a fresh venv, run the demo
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q
DEMO_OUT ?= demo_out

.PHONY: setup demo test package-check bench clean

setup: $(VENV)/.setup-done

# torch first: a bare `torch` requirement pulls a multi-GB CUDA build. Without an NVIDIA GPU we
# take a local CPU wheel when pip can find one offline, else PyTorch's CPU index as an extra index
# (pip's own index, or the one configured for it, stays the first; the CPU wheels' `+cpu` local
# version wins over PyPI's build of the same version).
$(VENV)/.setup-done: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	if $(PY) -c "import torch" 2>/dev/null; then :; \
	elif command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install "torch>=2.3"; \
	elif $(PIP) install --no-index --no-deps "torch==2.13.0" 2>/dev/null; then :; \
	else $(PIP) install "torch>=2.3" --extra-index-url https://download.pytorch.org/whl/cpu; fi
	$(PIP) install -e ".[test]"
	touch $@

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh $(DEMO_OUT)

# Two workers, a test file each (module fixtures are built once): the suite is mostly
# single-threaded work and subprocesses that wait on each other, so two cores run it in a little over half the time.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# Needs no set-up: the script makes its own environments (build and twine in one, the wheel in another).
package-check:
	PYTHON=$(PYTHON) bash scripts/check_package.sh

bench: setup
	$(PY) benchmarks/perf/ingest.py
	$(PY) benchmarks/perf/train.py
	$(PY) benchmarks/perf/predict.py
	$(PY) benchmarks/perf/time_to_model.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
