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

# The environment is the lock: requirements.lock pins every Python package (resolved by pip-tools for Python 3.11 on
# Linux x86_64), and space/requirements.txt is compiled from it. `make lock` re-resolves both on purpose.
LOCK := requirements.lock
SPACE_LOCK := space/requirements.txt
LOCK_PYTHON := 3.11

.PHONY: setup system-packages lock demo real-model space deploy-space test lint clean

setup: system-packages $(VENV)/.installed $(VENV)/.speaker-weights

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

# The locked versions and nothing else: --no-deps, so pip resolves nothing and no unlocked release can come in.
$(VENV)/.locked: $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(LOCK_PYTHON)".split("."))))' || { \
		echo "$(LOCK) is resolved for Python $(LOCK_PYTHON) but $(VENV) runs $$($(PY) --version)." \
			"Run: make clean && make setup PYTHON=/path/to/python$(LOCK_PYTHON)"; exit 1; }
	$(PY) -m pip install -q --no-deps $$(grep -E '^pip==' $(LOCK))
	$(PY) -m pip install -q --no-deps -r $(LOCK)
	touch $@

# A lock that no longer covers pyproject.toml stops here, naming the package, before the project is installed.
$(VENV)/.installed: $(VENV)/.locked pyproject.toml
	$(PY) scripts/check_lock.py --pyproject pyproject.toml --lock $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# The weights of the speaker encoder (`mer timeline --speakers`): Resemblyzer's wheel from PyPI, kept as a file, not
# installed (mer/serving/speakers.py says why), and checked against its pinned SHA-256.
$(VENV)/.speaker-weights: $(VENV)/.installed
	$(PY) -m mer.serving.speakers --fetch
	touch $@

# Keeps every pin that still fits pyproject.toml; LOCK_ARGS=--upgrade moves everything to the newest releases,
# LOCK_ARGS="--upgrade-package transformers" one package. pip-compile ignores the constraint files of pip's
# configuration (here: the torch builds on this machine's disk), so they are passed on.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile -q --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links \
	$(addprefix --constraint ,$(shell $(PY) -m pip config list | sed -n "s/^[^=]*[.]constraint='\(.*\)'$$/\1/p"))
lock: $(VENV)/.locked
	$(PIP_COMPILE) --all-extras $(LOCK_ARGS) --output-file $(LOCK) pyproject.toml
	$(PIP_COMPILE) --upgrade --annotation-style line --output-file $(SPACE_LOCK) space/requirements.in

demo: setup
	test -d $(DEMO_CORPUS)/Session5 || $(PY) -m dataset_scripts.synthetic --out $(DEMO_CORPUS) --per-dialog 63 --seed 0
	test -d $(DEMO_DIR)/encoders/tiny-bert || $(PY) -m mer.tiny --out $(DEMO_DIR)/encoders
	# Length grouping is off: in this corpus duration carries arousal, so length-grouped batches would be one class.
	# Encoders at 1e-3: at 3e-3 some seeds stall for good (training loss stuck near 2.5, one modality ignored).
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no train.py --data_dir $(DEMO_CORPUS) \
		--audio_model $(DEMO_DIR)/encoders/tiny-wav2vec2 --text_model $(DEMO_DIR)/encoders/tiny-bert \
		--output_dir $(DEMO_DIR)/run --folds 1 --group_by_length false --num_epochs 16 --early_stopping_patience 6 \
		--batch_size 16 --learning_rate 3e-3 --encoder_learning_rate 1e-3 --num_workers 1 \
		--config_overrides fusion_hidden_size=32,fusion_num_heads=4 $(DEMO_ARGS)

# A real model: MER trained on the public corpora found under CORPORA (scripts/real_model.py), with Whisper tiny.en and
# all-MiniLM-L6-v2 unless AUDIO_MODEL / TEXT_MODEL say otherwise; held-out speakers of every corpus test it; the model
# goes to OUT/model. REAL_MODEL_ARGS: e.g. "--folds 1 2 -- --seeds 1 2".
OUT ?= runs/real-model
REAL_MODEL_DIR = $(OUT)
real-model: setup
	@test -n "$(CORPORA)" || { echo "make real-model needs CORPORA=<the folder that holds the corpora>, e.g. CORPORA=../shared/data"; exit 2; }
	$(PY) scripts/real_model.py --corpora "$(CORPORA)" --out "$(OUT)" \
		$(if $(AUDIO_MODEL),--audio-model "$(AUDIO_MODEL)") $(if $(TEXT_MODEL),--text-model "$(TEXT_MODEL)") $(REAL_MODEL_ARGS)

# Serves MER_MODEL when set, else the real model (`make real-model`), else the model `make demo` trained, else the
# published one.
SPACE_MODEL = $(or $(MER_MODEL),$(wildcard $(REAL_MODEL_DIR)/model),$(firstword $(wildcard $(DEMO_DIR)/run/*/model)))
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
