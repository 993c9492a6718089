# Entry points: `make test` (the test command CI runs), `make dev` (the development environment).
DEV ?= $(or $(ALCM_DEV_DIR),$(CURDIR)/.dev)
PYTHON := $(DEV)/venv/bin/python
export ALCM_DEV_DIR := $(DEV)

.PHONY: dev test run lock

dev:
	@bash scripts/dev_env.sh

# Unit, integration and end-to-end tiers; pass PYTEST_ARGS="-m unit" (or a path) to narrow it.
test: dev
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The main job: text-to-video through ComfyUI's HTTP API; pass RUN_ARGS="--prompt '...' --seed 1" and so on.
run: dev
	$(PYTHON) scripts/main_job.py $(RUN_ARGS)

# The browser the browser test (tests/e2e/test_browser.py) drives: the distribution's chromium + chromium-driver.
.PHONY: browser-deps
browser-deps:
	@bash scripts/browser_deps.sh

# Refresh constraints.txt from an unconstrained install of requirements-dev.txt + ComfyUI's requirements.
lock:
	@ALCM_LOCK=0 bash scripts/dev_env.sh
	@{ sed -n '1,2p' constraints.txt; $(PYTHON) -m pip freeze --exclude-editable | LC_ALL=C sort -f; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt
