# PolyCSTR companion. The README's two commands are `make book` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0
# one torch/BLAS thread per process: two threads are slower than one on a 2-core machine
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

.PHONY: venv data notebooks mathjax html book test unit nbval postbuild browser bench lint lab clean \
	verify verify-roundtrip

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# pip takes the pinned torch (the machine's local CPU wheel, which only pip looks for) and
	# uv; uv installs the rest, the same versions as pip resolves, in a fraction of its time
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv 'torch==2.13.0' 2>&1 \
		| grep -v "^WARNING: Location" || true
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[book,test]'
	$(BIN)/python -c "import polycstr_lib, torch, jupyter_book" # fails loudly if the install did
	touch $(STAMP)

data: venv
	$(BIN)/python -m polycstr_lib data

mathjax:
	bash scripts/install_mathjax.sh

# BUDGET_MINUTES=N: training stops N minutes in, resumable, and the build exits unfinished
# (the pipeline's status 75, book/executed/incomplete.txt says where); the same command
# resumes. $POLYCSTR_DEADLINE (an ISO 8601 time) does the same when BUDGET_MINUTES is unset.
notebooks: venv data
	$(BIN)/python -m polycstr_lib notebooks --profile $(PROFILE) \
		$(if $(BUDGET_MINUTES),--budget-minutes $(BUDGET_MINUTES))

# the site from the executed pages in book/executed/ (nothing is executed again)
html: venv mathjax
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "book built: _build/html/index.html (profile $(PROFILE))"

book: notebooks
	$(MAKE) --no-print-directory html

unit: venv
	$(BIN)/python -m pytest tests -q --ignore=tests/postbuild --ignore=tests/browser

# checks of the built book (claims page consistency); run after `book`
postbuild: venv
	$(BIN)/python -m pytest tests/postbuild -q -p no:cacheprovider

nbval: venv data
	$(BIN)/python -m pytest --nbval-lax notebooks -q -p no:cacheprovider

# the built book in headless Chromium (skipped, with the reason, without chromium)
browser: venv
	$(BIN)/python -m pytest tests/browser -q -p no:cacheprovider

# Every page is executed once: one core runs the unit tests (private data and artifact
# stores) while the other executes the book's pages with papermill (the quick profile, the
# parameters the book is built with; a cell that raises stops the build). The site is then
# built from those executed pages and checked. `make nbval` still runs the notebooks' own
# defaults under nbval, as an extra check outside `make test`.
test: venv data
	$(MAKE) --no-print-directory -j2 --output-sync=target unit notebooks PROFILE=quick
	$(MAKE) --no-print-directory html
	$(MAKE) --no-print-directory postbuild browser

# A reviewer's check of a build without retraining: import BUNDLE (if given: a file from
# `python -m polycstr_lib bundle export`), execute every page with POLYCSTR_NO_TRAINING=1 into
# $(VERIFY_DIR) (never book/executed) and compare every glued value, timings aside, with the
# bundle's numbers.json (without BUNDLE: with book/executed). Exit 1 on any difference; a page
# that would train stops naming the missing entry. The profile is the bundle's.
VERIFY_DIR ?= _build/verify
verify: venv data
	$(BIN)/python -m polycstr_lib verify $(if $(BUNDLE),--bundle $(BUNDLE)) --executed $(VERIFY_DIR)

# The round trip on the book just built (run after `make book`; not part of `make test`: it
# executes every page again): export, import into an empty store, verify.
ROUNDTRIP ?= _build/roundtrip
verify-roundtrip: venv data
	rm -rf $(ROUNDTRIP) && mkdir -p $(ROUNDTRIP)
	$(BIN)/python -m polycstr_lib bundle export $(ROUNDTRIP)/book.tar
	POLYCSTR_ARTIFACTS=$(abspath $(ROUNDTRIP))/artifacts $(BIN)/python -m polycstr_lib verify \
		--bundle $(ROUNDTRIP)/book.tar --executed $(ROUNDTRIP)/executed

bench: venv data
	$(BIN)/python benchmarks/simulator.py

lint: venv
	$(BIN)/ruff check polycstr_lib tests benchmarks studies
	$(BIN)/ruff format --check polycstr_lib tests benchmarks studies

# JupyterLab on the notebooks, with this project's kernel (root, as in a container, needs
# --allow-root; LAB_ARGS adds options, e.g. LAB_ARGS="--no-browser --port 8890").
lab: venv
	$(BIN)/python -m ipykernel install --user --name polycstr --display-name "PolyCSTR (.venv)"
	$(BIN)/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

clean:
	rm -rf _build book/executed
