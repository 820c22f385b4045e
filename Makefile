# `make demo` and `make test` each set up .venv when it is missing or stale, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.famelog-installed
DEMO_DIR ?= demo-output

.PHONY: demo test install bench clean

install: $(STAMP)

# torch==2.13.0 comes first, from the CPU wheel on disk: anything that pulls torch in later would otherwise fetch a
# multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[ml,llm,dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO_DIR)
	@echo "== 1/4 synth: a labelled cluster log with memory, network, storage, kernel, scheduler and hardware messages"
	$(BIN)/famelog synth --lines 20000 --seed 0 --out $(DEMO_DIR)/cluster.log.gz
	@echo "== 2/4 templates: learn on the first 80%, freeze, match the rest (new failure types show up as unseen)"
	$(BIN)/famelog templates $(DEMO_DIR)/cluster.log.gz --format bgl --train-fraction 0.8 --top 12 \
		--save $(DEMO_DIR)/templates.json
	@echo "== 3/4 labels: at most K=100 lines per template to label"
	$(BIN)/famelog labels sample $(DEMO_DIR)/cluster.log.gz --format bgl --k 100 --out $(DEMO_DIR)/label-sheet.csv
	@echo "== 4/4 domains: propose failure domains (MiniLM embeddings, no LLM), then certify them"
	$(BIN)/famelog domains propose $(DEMO_DIR)/cluster.log.gz --format bgl --k 100 --train-fraction 0.8 \
		--backend embedding --out $(DEMO_DIR)/proposal.json
	$(BIN)/famelog domains certify $(DEMO_DIR)/proposal.json $(DEMO_DIR)/cluster.log.gz --format bgl --k 100 \
		--train-fraction 0.8 --out $(DEMO_DIR)/partition.json
	$(BIN)/famelog domains show $(DEMO_DIR)/partition.json
	@echo "== demo done: outputs in $(DEMO_DIR)/"

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/template_matching.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build src/*.egg-info
