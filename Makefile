# `make demo` and `make test` set everything up on a fresh machine: the virtual environment, the Python
# packages, and (when missing and run as root) the Debian packages the project needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# espeak-ng speaks the synthetic corpus, ffmpeg's libraries let torchcodec decode audio for `datasets`,
# chromium runs the Space's browser test.
SYSTEM_PACKAGES := espeak-ng ffmpeg chromium
SYSTEM_COMMANDS := espeak-ng ffmpeg chromium

.PHONY: setup system-packages test lint clean

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "Installing Debian packages for:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
		else \
			echo "Missing system commands:$$missing. Install the Debian packages '$(SYSTEM_PACKAGES)' (as root: make system-packages)."; \
			exit 1; \
		fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
