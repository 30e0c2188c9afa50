# Two commands do everything on a fresh machine: `make bench` and `make test`.
# Both create .venv when missing and (re)install only when requirements.txt or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: bench test install clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default (scikit-learn's digits: no download needed).
bench: $(STAMP)
	$(PY) run_bench.py train --model resnet20 --dataset digits --epochs 15 --out runs/bench-digits-resnet20

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
