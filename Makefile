# tumorlens: the two commands are `make book` (the main job) and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
EXTRAS  ?= dev,kaggle
# The book shows the published cpu results when they are in the repository, else the smoke profile.
PROFILE ?= $(if $(wildcard results/cpu/summary.json),cpu,smoke)

.PHONY: install book test test-full data reproduce reproduce-study clean-runs

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (tumorlens)"
	touch $@

## make book: build the book (published cpu results, or the smoke profile run on synthetic phantoms)
book: install
	$(BIN)/tumorlens book --profile $(PROFILE) --strict

## make test: the test suite (TEST_WORKERS pytest-xdist processes, each test file on one, the heaviest files first:
## tests/conftest.py HEAVY_FIRST). Its first file is the strict smoke book (tests/test_smoke_book.py: every job
## of the smoke plan from nothing, then every page, in a copy of the working tree), so one worker builds the
## book while the other runs the rest (measured on 2 AVX-512 cores: 452 s against 497 s for the suite, then
## the book on both workers). Each process gets one TensorFlow thread: they share the cores, and more threads
## only contend (measured: pytest 235 s vs 269 s on 2 cores). The same holds for the BLAS under
## NumPy/scikit-learn: with its default threads each process spins on both cores (the smoke ensembles'
## logistic-regression fit, 240 x 3840 features: 2.9 s wall / 5.4 s CPU with the default threads vs 0.7 s /
## 0.7 s with one).
TEST_WORKERS ?= 2
test: export TF_NUM_INTRAOP_THREADS = 1
test: export OMP_NUM_THREADS = 1
test: export OPENBLAS_NUM_THREADS = 1
test: export MKL_NUM_THREADS = 1
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=10

## make test-full: the same, with the full tier (tests marked `full`: contracts of the fast tier re-checked on
## whole data sets or in longer runs, e.g. the published model on all 1,311 Testing images, the cpu book from a
## clone, the whole Colab walkthrough); run by the Pages workflow and `make reproduce`
test-full: export TUMORLENS_TESTS = full
test-full: test

## make data: download the Kaggle dataset into data/brain-tumor-mri (needs network)
data: install
	$(BIN)/tumorlens data fetch

## make reproduce PROFILE=cpu: rerun the paper's experiments of a profile, its two parts in one
## invocation, each timed on its own and the two together (full_run) (headline: data, RQ1 over every seed and
## each module alone, ensembles; supplementary: the rest, explanations included), collect results/<profile>/
## (the times go to reproduction.json), build its book. make reproduce-study: the lesion study's grid (the
## study part: retrained candidates the lesion chapter compares; published, so the book needs no rerun).
## One job at a time by default: two cpu-profile trainings side by side need ~12 GB each and were killed for
## memory on a 24 GB machine; set REPRO_WORKERS=N (Dask) where memory allows.
REPRO_WORKERS ?= 1
REPRO_FLAGS = $(if $(filter 1,$(REPRO_WORKERS)),,--workers $(REPRO_WORKERS))
reproduce: install
	$(MAKE) test-full
	$(BIN)/tumorlens run --profile $(PROFILE) --part headline supplementary $(REPRO_FLAGS)
	$(BIN)/tumorlens book --profile $(PROFILE) --no-run

reproduce-study: install
	$(BIN)/tumorlens run --profile $(PROFILE) --part study $(REPRO_FLAGS)
	$(BIN)/tumorlens book --profile $(PROFILE) --no-run

clean-runs:
	rm -rf runs/smoke results/smoke book/_build book/generated
