# `make demo` and `make test` set everything up on a fresh machine: the virtual environment, the Python
# packages, and (when missing and run as root) the Debian packages the project needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# espeak-ng speaks the synthetic corpus, ffmpeg's libraries let torchcodec decode audio for `datasets`,
# chromium runs the Space's browser test.
SYSTEM_PACKAGES := espeak-ng ffmpeg chromium
SYSTEM_COMMANDS := espeak-ng ffmpeg chromium

# The demo: synthetic speech in the IEMOCAP layout and tiny random-init encoders, fold 1 (test on session 1).
DEMO_CORPUS := data/synthetic
DEMO_DIR := runs/demo

.PHONY: setup system-packages demo space deploy-space test lint clean

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "Installing Debian packages for:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
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

demo: setup
	test -d $(DEMO_CORPUS)/Session5 || $(PY) -m dataset_scripts.synthetic --out $(DEMO_CORPUS) --per-dialog 63 --seed 0
	test -d $(DEMO_DIR)/encoders/tiny-bert || $(PY) -m mer_tools.tiny --out $(DEMO_DIR)/encoders
	# Length grouping is off: in this corpus duration carries arousal, so length-grouped batches would be one class.
	$(VENV)/bin/accelerate launch --num_processes 1 train.py --data_dir $(DEMO_CORPUS) \
		--audio_model $(DEMO_DIR)/encoders/tiny-wav2vec2 --text_model $(DEMO_DIR)/encoders/tiny-bert \
		--output_dir $(DEMO_DIR)/run --folds 1 --group_by_length false --num_epochs 12 --early_stopping_patience 4 \
		--batch_size 16 --learning_rate 3e-3 --encoder_learning_rate 3e-3 --num_workers 1 \
		--config_overrides fusion_hidden_size=32,fusion_num_heads=4 $(DEMO_ARGS)

# Serves MER_MODEL when set, else the model `make demo` trained, else the published one.
SPACE_MODEL = $(or $(MER_MODEL),$(firstword $(wildcard $(DEMO_DIR)/run/*/model)))
space: setup
	MER_MODEL="$(SPACE_MODEL)" $(PY) space/app.py

# make deploy-space SPACE_ID=user/name [HUB_MODEL=user/model]
deploy-space: setup
	$(PY) space/deploy.py --space_id $(SPACE_ID) $(if $(HUB_MODEL),--model $(HUB_MODEL))

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
