# Two entry points for a fresh machine (Python 3.11, pip): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[all]"
	rm -f $(VENV)/.installed-*; touch $@

.PHONY: install demo test test-fast test-slow lint versions
install: $(STAMP)

# Recreate ResNet-18 in Keras, transfer its weights, verify parity, write out/resnet18.keras,
# out/parity.md and out/parity.png.
demo: $(STAMP)
	$(PY) zoo/resnet.py --variant resnet18 --out out/

# The default suite (property tests included), then the slow whole-model checks.
test: test-fast test-slow

test-fast: $(STAMP)
	$(PY) -m recreate versions
	$(PY) -m pytest -n 2 -q

test-slow: $(STAMP)
	$(PY) -m pytest -n 2 -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check src tests zoo scripts

versions: $(STAMP)
	$(PY) -m recreate versions
