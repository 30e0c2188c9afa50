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

# The main job on the embedded default (scikit-learn's digits: no download needed):
# search_spaces/quick.yaml (LAASP vs uniform L1 vs FPGM vs random, + unpruned, 2 seeds),
# then its tables, HTML report and figures. A second run resumes the same sweep (nothing left to do).
BENCH_RESULTS := runs
bench: $(STAMP)
	@if [ -f $(BENCH_RESULTS)/quick/sweep.json ]; then \
		$(PY) run_bench.py sweep --resume quick --results-dir $(BENCH_RESULTS); \
	else \
		$(PY) run_bench.py sweep search_spaces/quick.yaml --results-dir $(BENCH_RESULTS); \
	fi
	$(PY) run_bench.py table $(BENCH_RESULTS)/quick
	$(PY) run_bench.py table $(BENCH_RESULTS)/quick --view time
	$(PY) run_bench.py report $(BENCH_RESULTS)/quick
	$(PY) run_bench.py plots $(BENCH_RESULTS)/quick

# One pytest worker per core, each test file on one worker (its module fixtures built once).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile
	@if $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then $(PY) -m pytest -q -m cuda; fi

clean-venv:
	rm -rf $(VENV)
