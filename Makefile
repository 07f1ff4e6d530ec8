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
	verify roundtrip roundtrip-chained roundtrip-independent checks

venv: $(STAMP)

# pip takes the pinned torch (the machine's local CPU wheel, which only pip looks for) and uv;
# uv installs the rest, the same versions as pip resolves, in a fraction of its time
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
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

# The reviewer's bundle of this build (book/bundle.md: "Verify these numbers"): the store's
# entries and the pages' glued values, its sha256 beside it and on the page.
BUNDLE_FILE ?= _build/bundle/polycstr-$(PROFILE).tar

# the bundle, then the site from the executed pages in book/executed/ (nothing is executed
# again); the site carries the pages' glued values as _build/html/numbers.json
html: venv mathjax
	$(BIN)/python -m polycstr_lib bundle export $(BUNDLE_FILE) --record book/executed/bundle.md
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
# parameters the book is built with; a cell that raises stops the build). The site and its
# bundle are then built from those executed pages and checked: one core runs the longer half
# of the reviewer's round trip (the bundle imported into an empty store, every page executed
# again without training, every glued value compared), the other the checks of the built site
# (postbuild, with the tampered and stale bundles, then the browser), then the other half.
# `make nbval` still runs the notebooks' own defaults under nbval, as an extra check outside
# `make test`.
test: venv data
	$(MAKE) --no-print-directory -j2 --output-sync=target unit notebooks PROFILE=quick
	$(MAKE) --no-print-directory html PROFILE=quick
	$(MAKE) --no-print-directory -j2 --output-sync=target roundtrip-chained checks \
		roundtrip-independent PROFILE=quick

# the built site's checks, one after the other (the other core runs the round trip)
checks:
	$(MAKE) --no-print-directory postbuild browser

# A reviewer's check of a build without retraining: import BUNDLE (if given: a file or URL of
# `python -m polycstr_lib bundle export`, checked against SHA256 when given; a URL needs it),
# execute every page with POLYCSTR_NO_TRAINING=1 into $(VERIFY_DIR) (never book/executed) and
# compare every glued value, timings aside, with the bundle's numbers.json (without BUNDLE:
# with book/executed). Exit 1 on any difference; a page that would train stops naming the
# missing entry. The profile is the bundle's.
VERIFY_DIR ?= _build/verify
verify: venv data
	$(BIN)/python -m polycstr_lib verify $(if $(BUNDLE),--bundle $(BUNDLE)) \
		$(if $(SHA256),--sha256 $(SHA256)) --executed $(VERIFY_DIR)

# The round trip on the book just built (after `make html`, which exports $(BUNDLE_FILE)): the
# bundle, checked against its .sha256, imported into an empty store, every page executed
# again without training, every glued value compared ("identical: N values on M pages"). Two
# halves that can run at once, each with its own empty store and folder: the pages that read
# other executed pages (the curves page's budgets, the results pages), and the rest.
ROUNDTRIP ?= _build/roundtrip
roundtrip: roundtrip-chained roundtrip-independent

roundtrip-chained roundtrip-independent: roundtrip-%: venv data
	rm -rf $(ROUNDTRIP)/$* && mkdir -p $(ROUNDTRIP)/$*
	POLYCSTR_ARTIFACTS=$(abspath $(ROUNDTRIP))/$*/artifacts $(BIN)/python -m polycstr_lib verify \
		--bundle $(BUNDLE_FILE) --sha256 $$(cut -d' ' -f1 $(BUNDLE_FILE).sha256) \
		--group $* --executed $(ROUNDTRIP)/$*/executed

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
