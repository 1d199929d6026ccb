# The README's commands. Each installs what it needs into the active Python environment
# (activate a virtual environment or conda environment first if you want one).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# jupyter-book has no `python -m` entry point; call its command-line function with this Python.
JUPYTER_BOOK := $(PYTHON) -c "from jupyter_book.cli.main import main; main()"

.PHONY: book test notebooks check-notebooks lab screenshots benchmark leaderboard data-needs clean

## book: install the book's dependencies and build the HTML book from the committed outputs
book:
	$(PIP) install -q -e ".[book]"
	$(JUPYTER_BOOK) build . --all -W -n --keep-going
	@echo "open _build/html/index.html"

## test: install the test dependencies and run every test, every notebook in quick mode, and the book build
# The unit tests run in two processes of one thread each (pytest-xdist): their models are tiny, so
# a second thread mostly waits. The notebooks run two at a time too, one thread each; pages that
# load runs another page trains (3.5 those of 3.1-3.4, 6.4.1 those of 6.3.1) run in one process,
# in the book's order (book/conftest.py groups them).
test:
	$(PIP) install -q -e ".[dev]"
	AIGC_LAB_QUICK=1 OMP_NUM_THREADS=1 $(PYTHON) -m pytest tests -n 2 --durations=15
	AIGC_LAB_QUICK=1 OMP_NUM_THREADS=1 $(PYTHON) -m pytest book --nbmake --nbmake-timeout=240 -n 2 --dist loadgroup --durations=40

## notebooks: execute every notebook in full mode and write the outputs back (to commit)
notebooks:
	$(PYTHON) -m aigc_lab.notebooks execute

## check-notebooks: are the committed outputs full-mode and up to date with the code?
check-notebooks:
	$(PYTHON) -m aigc_lab.notebooks check

## lab: open the notebooks in JupyterLab
lab:
	$(PIP) install -q -e ".[book]"
	$(PYTHON) -m jupyterlab book/

## screenshots: screenshot the built book's pages with headless Chromium, as a reader without internet sees them
screenshots:
	$(PYTHON) tools/screenshot.py _build/html/index.html _build/html/book/*.html --out _build/screenshots --window-size 1400,3000 --offline

## benchmark: print every model's training images per second and time to sample 1000 images (not a test)
benchmark:
	$(PYTHON) tools/benchmark.py

## leaderboard: train and measure every model of the book with 3 seeds (about an hour on 2 CPU cores; not a test), write book/leaderboard.json
leaderboard:
	$(PIP) install -q -e ".[dev]"
	$(PYTHON) -m aigc_lab.leaderboard

## data-needs: train chapter 6.3's DCGAN and VAE on 20, 40 and 80 faces with 3 seeds, and the VAE's equal-epochs control (about 35 minutes on 2 CPU cores; not a test), write book/data_needs.json
data-needs:
	$(PIP) install -q -e ".[dev]"
	$(PYTHON) -m aigc_lab.data_needs

clean:
	rm -rf _build .pytest_cache book/runs runs
