# `make demo` and `make test` are the README's Quick start: each sets up .venv (scripts/setup.sh) and then runs.
PYTHON := .venv/bin/python

.PHONY: demo test test-slow test-all setup setup-dev

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh --dev

# demo: train the embedded default (prints validation and test F1 per corpus), then tag the shipped abstract and print
# its mentions (hstl/sample_data/README.md says where the abstract comes from).
demo: setup
	$(PYTHON) train.py --config configs/demo.yaml --output_dir runs/demo
	$(PYTHON) predict.py --model runs/demo --input hstl/sample_data/abstract.txt --output runs/demo-abstract.jsonl --show

test: setup-dev
	$(PYTHON) -m pytest -m "not slow" -q

test-slow: setup-dev
	$(PYTHON) -m pytest -m slow -q

test-all: setup-dev
	$(PYTHON) -m pytest -q
