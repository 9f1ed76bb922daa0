# genie-companion: `make reproduce` runs the notebooks, `make test` runs the tests (notebooks included).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= embedded
STAMP := $(VENV)/.installed

.PHONY: setup test audit browser check reproduce tables site publish lab companion clean-results

setup: $(STAMP)

# Idempotent: reinstalls only when requirements.txt or pyproject.toml changed.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test: setup browser
	GENIE_PROFILE=smoke GENIE_HEADLESS=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-kernel-name python3 \
		--nbval-cell-timeout 600 --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider

# The own-data audit (tests/audit, marker audit, left out of make test): every entry point a new user calls, fed the
# inputs that go wrong, one fresh process each (about 20 min on 2 CPU cores); fails on any case whose outcome is not the
# one it expects. docs/generating.md describes it.
audit: setup
	GENIE_PROFILE=smoke GENIE_HEADLESS=1 $(PY) -m pytest tests/audit -m audit -p no:cacheprovider

# Debian's chromium for the site's browser test (tests/test_site.py): installed where this runs as root with apt-get
# (as in CI); elsewhere, without it, that one test is skipped with a message.
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the site's browser test"; \
		apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
		apt-get install -y -q chromium >/dev/null 2>&1; } || echo "could not install chromium: its test is skipped"; }

# The preflight: the dataset, model, backbones, oracle, long tail, disk and time a run of PROFILE needs, one table
# line each, checked without generating an image (make reproduce runs it first and stops when an item is not ready).
check: setup
	$(PY) -m genie_utils.reproduce --profile $(PROFILE) --check

# Skips every notebook whose inputs (itself, the library, the profile, the models, earlier notebooks) are unchanged.
# A settle profile (PROFILE=embedded-settle) runs its slices again instead, into docs/results/<profile>/.
reproduce: setup
	GENIE_HEADLESS=1 $(PY) -m genie_utils.reproduce --profile $(PROFILE)
	$(PY) -m genie_utils.tables
	$(PY) -m genie_utils.site --profile $(PROFILE)

# README's and docs' tables, written between their markers from the committed result files (docs/results/); runs
# nothing else. The tests fail when a page differs from its files.
tables: setup
	$(PY) -m genie_utils.tables

# The offline site (results/<profile>/site/README.html) from the notebooks make reproduce executed; runs nothing.
site: setup
	$(PY) -m genie_utils.site --profile $(PROFILE)

# The executed notebooks, paths made relative and run timings dropped, into docs/notebooks/, and the result files of
# the paper's figures and tables into docs/results/<profile>/ (committed: a reader on a code host sees them); runs
# nothing.
publish: setup
	$(PY) -m genie_utils.site --profile $(PROFILE) --publish
	$(PY) -m genie_utils.tables

# One notebook again, e.g. `make notebook-05`: the analyses re-rendered from the result files and caches.
notebook-%: setup
	GENIE_HEADLESS=1 $(PY) -m genie_utils.reproduce --profile $(PROFILE) --only $* --force

# Retrain the companion model from scratch and fine-tune it (resumes from .cache/companion-training; delete it to
# start over), then the oracle, the judge curve, the editing benchmark and the model card. `make reproduce` never
# retrains.
companion: setup
	$(PY) -m genie_utils.companion all --profile $(PROFILE)

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean-results:
	rm -rf results .cache
