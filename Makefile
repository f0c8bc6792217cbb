# The course's commands. `make book` and `make test` are all a newcomer needs; both set up .venv on first use and
# call pip again only when requirements.txt or pyproject.toml changed (so they work offline after the first run).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pip's warnings about this machine's extra local indexes are noise for a learner; hide just those lines.
PIPFILTER := grep -v 'is ignored: it is neither a file nor a directory' || true

.PHONY: help install book serve notebooks test test-fast lab check exercises tokenizer pretrain grade bench gpu-check release clean

help:
	@echo "make book       build the site into _build/html (executes every chapter; cached)"
	@echo "make serve      serve the built site at http://127.0.0.1:8000/ (search works there; PORT=8001 for another port)"
	@echo "make notebooks  write the chapters as notebooks to run and change: book/notebooks/*.ipynb"
	@echo "make lab        open JupyterLab on the chapter notebooks and the exercises"
	@echo "make check NB=exercises/ch01_tokens/tokens.ipynb   self-check an exercise notebook"
	@echo "make test       run the whole test suite"
	@echo "make test-fast  run the tests not marked slow (a quick check while you work)"
	@echo "make install    set up .venv with the pinned requirements (the other targets do it when needed)"
	@echo "make exercises  regenerate the student notebooks in exercises/ from solutions/"
	@echo "make release    the student notebooks as one archive per chapter and one for the course, in _build/release"
	@echo "make tokenizer  retrain the course tokenizer (gptcourse/data/course_bpe.json)"
	@echo "make pretrain   train the course model once (cached in ~/.cache/gptcourse; Chapters 6 and 7 use it)"
	@echo "make grade SUBMISSIONS=dir WORKSPACE=dir [ARGS=\"--jobs 2\"]   grade <student>/<chapter>/<nb>.ipynb (python -m autograder.grade -h)"
	@echo "make bench      print the benchmarks"
	@echo "make gpu-check  the checks that need a CUDA GPU (says so and exits 0 where there is none)"
	@echo "make clean      delete _build (the site and its execution cache; book/notebooks is kept)"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed (3.11 recommended); set PYTHON=/path/to/python3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the pinned requirements into $(VENV) (first time only; needs the package index)..."
	@$(BIN)/python -m pip install -q -r requirements.txt 2>&1 | { $(PIPFILTER); }
	@touch $(STAMP)

# The execution cache (_build/.jupyter_cache) is keyed on a page's code cells only; it cannot see edits to the
# gptcourse library, so it is dropped whenever a library file is newer than it. --all re-reads every page.
book: $(STAMP)
	@if [ -d _build/.jupyter_cache ] && [ -n "$$(find gptcourse -name '*.py' -newer _build/.jupyter_cache/global.db)" ]; then \
		echo "The library changed since the chapters last ran: executing them again."; rm -rf _build/.jupyter_cache; fi
	$(BIN)/jupyter-book build . --all --builder html -W -n --keep-going

# Sphinx's search reads its index with JavaScript, which browsers refuse for file:// pages: serve the site instead.
PORT ?= 8000
SITE ?= _build/html
serve: $(STAMP)
	@$(BIN)/python book/_ext/serve.py --port $(PORT) --site "$(SITE)"

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

notebooks: $(STAMP)
	@$(BIN)/python book/_ext/chapter_notebooks.py

# Jupyter refuses to start as root unless told; in a container, root is normal.
lab: notebooks
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

# A failed check has already said what failed; make would add "make: *** [check] Error 1", which only alarms. So
# make is ended by SIGPIPE instead, which no shell reports: the exit status stays non-zero (141), without that line.
check: $(STAMP)
	@test -n "$(NB)" || { echo "Say which notebook: make check NB=exercises/ch01_tokens/tokens.ipynb"; kill -PIPE $$PPID; }
	@$(BIN)/python -m autograder.check "$(NB)" || kill -PIPE $$PPID

exercises: $(STAMP)
	$(BIN)/python -m autograder.generate

tokenizer: $(STAMP)
	$(BIN)/python -m gptcourse.course_tokenizer

pretrain: $(STAMP)
	$(BIN)/python -m gptcourse.pretrain

release: $(STAMP)
	$(BIN)/python -m autograder.release

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" -a -n "$(WORKSPACE)" || { echo "Usage: make grade SUBMISSIONS=path/to/submissions WORKSPACE=path/outside/repo"; exit 2; }
	$(BIN)/python -m autograder.grade "$(SUBMISSIONS)" --workspace "$(WORKSPACE)" $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bpe_training
	$(BIN)/python -m benchmarks.encoding
	$(BIN)/python -m benchmarks.attention
	$(BIN)/python -m benchmarks.gpt_model
	$(BIN)/python -m benchmarks.pretraining
	$(BIN)/python -m benchmarks.generation
	$(BIN)/python -m benchmarks.book_build
	$(BIN)/python -m benchmarks.grading
	$(BIN)/python -m benchmarks.finetuning

# On a GPU runner with the course's packages already installed (and no package index), set PYTHON to that Python.
gpu-check:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m autograder.gpu_check; else $(PYTHON) -m autograder.gpu_check; fi

clean:
	rm -rf _build
