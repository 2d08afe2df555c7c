# A newcomer needs two commands: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build; GPU users: make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" (README).
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) run_search.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed
	$(PY) bench/trainable_overhead.py
	$(PY) bench/eval_speed.py
	$(PY) bench/search_overhead.py
	$(PY) bench/population.py
	$(PY) bench/population_memory.py
	$(PY) bench/demo_search.py
	$(PY) bench/search_quality.py --quick

clean:
	rm -rf $(VENV) results
