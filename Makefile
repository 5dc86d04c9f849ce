# Two commands: `make lab` (set up, open JupyterLab) and `make test` (set up, run every test).
# Set-up is idempotent: it re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
# GPU users: make TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128" lab
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,faiss,browser,export
PYTEST_ARGS ?= -n 2
LAB_PORT ?= 8888
# Jupyter refuses to start as root unless told; containers often run as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

BIN := $(VENV)/bin
STAMP := $(VENV)/.longlab-installed

.PHONY: setup lab test test-fast bench figures clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

lab: setup
	@token=$$($(BIN)/python -c "import secrets; print(secrets.token_hex(24))"); \
	echo ""; echo "longlab tour: http://127.0.0.1:$(LAB_PORT)/lab/tree/notebooks/00_tour.ipynb?token=$$token"; echo ""; \
	JUPYTER_TOKEN=$$token exec $(BIN)/jupyter lab notebooks/00_tour.ipynb --ServerApp.ip=127.0.0.1 \
		--ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 --LabApp.news_url=None \
		--ServerApp.root_dir=$(CURDIR) $(ALLOW_ROOT)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow and not browser"

bench: setup
	$(BIN)/longlab bench all

figures: setup
	$(BIN)/python data/make_readme_figures.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
