# Two commands: `make lab` (set up, open JupyterLab) and `make test` (set up, run every test).
# Set-up is idempotent: it re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
# GPU users: make TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128" lab
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,faiss,browser,export
PYTEST_ARGS ?= -n 2
LAB_PORT ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.longlab-installed

.PHONY: setup lab test test-fast bench figures site clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

# `longlab lab` prints the tour's link once the server answers, on 8888 or the next free port; LAB_PORT forces one.
lab: setup
	@$(BIN)/longlab lab $(if $(LAB_PORT),--port $(LAB_PORT),)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow and not browser"

bench: setup
	$(BIN)/longlab bench all

figures: setup
	$(BIN)/python data/make_readme_figures.py

# Static HTML site in ./site: every notebook executed headless (larger parameters: viz/site.py SITE_PARAMETERS),
# plotly figures interactive, an index page. SITE_ARGS="--small --only 00_tour" for a quick one.
site: setup
	$(BIN)/python -m viz.site --out site $(SITE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
