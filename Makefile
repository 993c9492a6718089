# Entry points: `make test` (the test command CI runs), `make dev` (the development environment).
# COMFYUI picks the ComfyUI target: 0.33.0 (default) or 0.3.75; COMFYUI_PATH=/path/to/ComfyUI uses another folder.
DEV ?= $(or $(ALCM_DEV_DIR),$(CURDIR)/.dev)
COMFYUI ?= $(or $(ALCM_COMFYUI),0.33.0)
export ALCM_DEV_DIR := $(DEV)
export ALCM_COMFYUI := $(COMFYUI)
PYTHON = $(shell ALCM_DEV_DIR="$(DEV)" ALCM_COMFYUI="$(COMFYUI)" bash scripts/dev_env.sh --print-python)

.PHONY: dev test run lock browser-deps

dev:
	@bash scripts/dev_env.sh

# Unit, integration and end-to-end tiers; pass PYTEST_ARGS="-m unit" (or a path) to narrow it.
test: dev
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The main job: text-to-video through ComfyUI's HTTP API; pass RUN_ARGS="--prompt '...' --seed 1" and so on.
run: dev
	$(PYTHON) scripts/main_job.py $(RUN_ARGS)

# The browser the browser test (tests/e2e/test_browser.py) drives: the distribution's chromium + chromium-driver.
browser-deps:
	@bash scripts/browser_deps.sh

# Refresh constraints/comfyui-$(COMFYUI).txt from an unconstrained install of requirements-dev.txt + that ComfyUI's
# requirements.
LOCK = constraints/comfyui-$(COMFYUI).txt
lock:
	@test -z "$(COMFYUI_PATH)" || { echo "make lock pins a target (COMFYUI=0.33.0 or 0.3.75), not COMFYUI_PATH" >&2; exit 2; }
	@ALCM_LOCK=0 bash scripts/dev_env.sh
	@{ echo "# Exact versions for the ComfyUI $(COMFYUI) development/test environment, so every fresh machine gets the same ones."; \
	   echo "# Regenerate with \`make lock COMFYUI=$(COMFYUI)\` after changing requirements-dev.txt."; \
	   $(PYTHON) -m pip freeze --exclude-editable | LC_ALL=C sort -f; } > $(LOCK).new
	@mv $(LOCK).new $(LOCK)
