PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench results clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/costmodel candidates --model resnet18 --summary
	$(BIN)/costmodel workloads --model resnet18 --out luts/resnet18-workloads
	$(BIN)/costmodel build --arch eyeriss --model resnet18 --out luts/resnet18-eyeriss

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/predictor_bench.py
	$(BIN)/python benchmarks/measured_bench.py
	$(BIN)/python benchmarks/search_bench.py
	$(BIN)/python benchmarks/targets_bench.py

# Reproductions of the paper's hardware findings (see results/README.md).
results: $(STAMP)
	$(BIN)/costmodel heatmap --arch eyeriss --model resnet18 --layer layer3.0.conv2 --step 8 --out results/figure2

clean:
	rm -rf $(VENV) build *.egg-info
