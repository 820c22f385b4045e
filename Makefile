# `make demo` and `make test` each set up .venv when it is missing or stale, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.famelog-installed
DEMO_DIR ?= demo-output
FAMELOG_DATA ?= ../shared/data

.PHONY: demo test install bench bench-quick clean

install: $(STAMP)

# torch==2.13.0 comes first, from the CPU wheel on disk: anything that pulls torch in later would otherwise fetch a
# multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[ml,llm,bench,dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO_DIR)
	@echo "== 1/6 synth: a labelled cluster log (memory, network, storage, kernel, scheduler, hardware); new failure types appear late"
	$(BIN)/famelog synth --lines 20000 --seed 0 --out $(DEMO_DIR)/cluster.log
	head -n 16000 $(DEMO_DIR)/cluster.log > $(DEMO_DIR)/train.log
	tail -n 4000 $(DEMO_DIR)/cluster.log > $(DEMO_DIR)/test.log
	@echo "== 2/6 templates: learn on the first 80%, freeze, match the rest (new failure types show up as unseen)"
	$(BIN)/famelog templates $(DEMO_DIR)/cluster.log --format bgl --train-fraction 0.8 --top 8
	@echo "== 3/6 labels: at most K=100 lines per template to label (the demo's label column plays the annotator)"
	$(BIN)/famelog labels sample $(DEMO_DIR)/train.log --format bgl --k 100 --out $(DEMO_DIR)/label-sheet.csv
	@echo "== 4/6 domains: propose failure domains (MiniLM embeddings, no LLM), then certify them"
	$(BIN)/famelog domains propose $(DEMO_DIR)/train.log --format bgl --k 100 --backend embedding \
		--out $(DEMO_DIR)/proposal.json
	$(BIN)/famelog domains certify $(DEMO_DIR)/proposal.json $(DEMO_DIR)/train.log --format bgl --k 100 \
		--out $(DEMO_DIR)/partition.json
	$(BIN)/famelog domains show $(DEMO_DIR)/partition.json
	@echo "== 5/6 fit: router and calibrated MiniLM experts"
	$(BIN)/famelog fit $(DEMO_DIR)/train.log --format bgl --k 100 --partition $(DEMO_DIR)/partition.json \
		--epochs 2 --out $(DEMO_DIR)/model
	@echo "== 6/6 detect on the last 20% (one row per line), then explain one line"
	$(BIN)/famelog detect $(DEMO_DIR)/model $(DEMO_DIR)/test.log --format bgl --out $(DEMO_DIR)/detections.csv --evaluate
	$(BIN)/famelog explain $(DEMO_DIR)/model "fsck: block bitmap differences on device sdb: +4711"
	@echo "== demo done: outputs in $(DEMO_DIR)/ (detections.csv has one row per line of test.log)"

test: $(STAMP)
	$(BIN)/python -m pytest

# The full grid of benchmarks/bench.json over FAMELOG_DATA (about an hour on 2 cores; finished runs are reused).
bench: $(STAMP)
	$(BIN)/famelog bench --data $(FAMELOG_DATA) --out bench-output

# The reduced CI grid: completes and yields well-formed numbers (no quality thresholds).
bench-quick: $(STAMP)
	$(BIN)/famelog bench --quick --data $(FAMELOG_DATA) --out bench-output-quick

clean:
	rm -rf $(DEMO_DIR) bench-output-quick .pytest_cache build src/*.egg-info
