# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export YOLO_OFFLINE := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test repro repro-quick bench clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this build lies on the machine's disk, any other downloads gigabytes
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Generate a 10 s synthetic drone pass and survey it, then a 10 s site clip and check hard hats, with the shipped weights.
demo: setup
	rm -rf runs/demo
	$(VENV)/bin/inspectflow synth facade-video --out runs/demo/clip.mp4 --seconds 10 --seed 7
	$(VENV)/bin/inspectflow run damage-survey --source runs/demo/clip.mp4 --out runs/demo/survey
	$(VENV)/bin/inspectflow synth site-video --out runs/demo/site.mp4 --seconds 10 --seed 1
	$(VENV)/bin/inspectflow run site-safety --source runs/demo/site.mp4 --out runs/demo/safety

test: setup
	$(PY) -m pytest

# Rebuild data, weights and metrics from scratch: about 5 h on 2 CPU cores (README, "What make repro costs").
repro: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro

# Every model again from scratch, smaller and into data/quick/ (the shipped weights stay): 83.8 min on 2 CPU cores, latest run.
repro-quick: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro data/quick/dvc.yaml

bench: setup
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/accuracy.py
