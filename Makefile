# The two commands a newcomer needs (see README):
#   make demo   set up, then run the main job on the shipped default model
#   make test   set up, then run the test suite (what CI runs)
# Setup is a local virtualenv in .venv. torch is installed first, pinned to the CPU wheel this project
# targets, so that nothing later pulls a multi-GB CUDA build.

VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared/data
DEMO   ?= out/demo
# The default evaluation set; must equal deepisp.data.DEFAULT_EVAL_SET (relative to the repo root, where make runs).
EVAL   := out/s7-kodak24

.PHONY: setup test lint demo clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e ".[test,export,bench]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(VENV)/bin/pytest

# What CI runs before the tests: ruff (lint + format, configured in pyproject.toml) and README tables that
# match benchmarks/results/.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) benchmarks/update_readme.py --check

demo: setup
	@test -d $(SHARED) || { echo "error: $(SHARED) not found: the demo needs the shared photos and raw files beside the repo"; exit 2; }
	$(VENV)/bin/deepisp make-synthetic --photos $(SHARED)/photos/kodak24 --out $(EVAL) --seed 1
	$(VENV)/bin/deepisp eval --data $(EVAL) --split all --out $(DEMO)/eval
	$(PY) export/to_tflite.py --quant fp16 --out $(DEMO)/export
	$(VENV)/bin/deepisp process $(SHARED)/raw/colorchart.dng -o $(DEMO)/colorchart.jpg --backend tflite --model $(DEMO)/export/deepisp_fp16.json
	@echo "demo outputs in $(DEMO)/: eval/metrics.json, eval/*_input_output_target.png, export/ (fp16 TFLite + report), colorchart.jpg"

clean:
	rm -rf $(VENV) out
