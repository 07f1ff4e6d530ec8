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

.PHONY: venv data notebooks mathjax book test unit warm unit-then-warm nbval postbuild browser bench lint lab clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[book,test]' 2>&1 \
		| grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import polycstr_lib, torch, jupyter_book" # fails loudly if the install did
	touch $(STAMP)

data: venv
	$(BIN)/python -m polycstr_lib data

mathjax:
	bash scripts/install_mathjax.sh

notebooks: venv data
	$(BIN)/python -m polycstr_lib notebooks --profile $(PROFILE)

book: notebooks mathjax
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "book built: _build/html/index.html (profile $(PROFILE))"

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

# The results pages that nbval does not execute (its 05 runs the default scenario), executed
# once so that the book build finds their training runs cached.
WARM_PAGES := 05_results_grade_down 05_results_grade_up

warm: venv
	$(BIN)/python -m polycstr_lib notebooks --profile quick $(WARM_PAGES:%=--only %)

# One core runs the unit tests (private data and artifact stores), then `warm`; the other the
# notebooks under nbval. The book build then reuses the artifacts both trained.
test: venv data
	$(MAKE) --no-print-directory -j2 --output-sync=target unit-then-warm nbval
	$(MAKE) --no-print-directory book postbuild browser

unit-then-warm:
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory warm

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
