# genie-companion: `make reproduce` runs the notebooks, `make test` runs the tests (notebooks included).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= embedded
STAMP := $(VENV)/.installed

.PHONY: setup test reproduce lab companion clean-results

setup: $(STAMP)

# Idempotent: reinstalls only when requirements.txt or pyproject.toml changed.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test: setup
	GENIE_PROFILE=smoke GENIE_HEADLESS=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-kernel-name python3 \
		--nbval-cell-timeout 600 --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider

# Skips every notebook whose inputs (itself, the library, the profile, the models, earlier notebooks) are unchanged.
reproduce: setup
	GENIE_HEADLESS=1 $(PY) -m genie_utils.reproduce --profile $(PROFILE)

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
