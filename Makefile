# tumorlens: the two commands are `make book` (the main job) and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= smoke
EXTRAS  ?= dev,kaggle

.PHONY: install book test data clean-runs

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (tumorlens)"
	touch $@

## make book: execute the notebooks for PROFILE (default smoke: synthetic phantoms) and build the book
book: install
	$(BIN)/tumorlens book --profile $(PROFILE)

## make test: the test suite, then a strict build of the smoke book
test: install
	$(BIN)/python -m pytest -q
	$(BIN)/tumorlens book --profile smoke --strict

## make data: download the Kaggle dataset into data/brain-tumor-mri (needs network)
data: install
	$(BIN)/tumorlens data fetch

clean-runs:
	rm -rf runs/smoke book/_build book/generated
