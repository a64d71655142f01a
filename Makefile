# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# pyenv may install a `python3.12` shim that fails until a version is selected, so probe each
# candidate by running it rather than trusting `command -v`.
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	  $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline by construction: no Hub, caches inside the build dir, software GL for MuJoCo.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HOME := $(CURDIR)/.cache/hf
export HF_LEROBOT_HOME := $(CURDIR)/.cache/lerobot
export HF_LEROBOT_CALIBRATION := $(CURDIR)/.cache/calibration
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export TOKENIZERS_PARALLELISM := false
export WANDB_MODE := disabled

.PHONY: help demo test venv clean

help:
	@echo "make demo   create .venv (python3.12) if absent, install, then protocol -> dataset -> train -> eval (DEMO_TASKS, DEMO_MINUTES)"
	@echo "make test   same venv, run the test suite"

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "error: Python 3.12 not found (tried python3.12 and ~/.pyenv/versions/3.12*); install it or pass PYTHON=/path/to/python3.12" >&2; exit 2; fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,franka]"
	$(PY) -m pip install --quiet --no-deps "franky-sim==1.0.4"
	$(PY) -m pip install --quiet --no-deps "robosuite==1.5.2" "gym-aloha==0.1.5"  # robot profiles' model files only
	@touch $(STAMP)

venv: $(STAMP)

# make demo DEMO_TASKS=open_door,press_button DEMO_MINUTES=20 (training wall time per policy);
# DEMO_EPISODES, DEMO_EVAL_EPISODES and DEMO_CAMERAS are read from the environment too (python -m lerobot_labvla.demo -h)
DEMO_TASKS ?= open_door
DEMO_MINUTES ?= 20
demo: $(STAMP)
	$(PY) -m lerobot_labvla.demo --tasks $(DEMO_TASKS) --minutes $(DEMO_MINUTES)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .cache outputs
