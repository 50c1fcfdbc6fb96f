# Entry points for people; `dvc repro` and the Prefect flows call the `octopus` CLI underneath.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install run test bench demo clean-cache

$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed  ## create the project virtualenv with every pinned dependency

run: install  ## the main job on the embedded defaults: the pipeline through DVC, then a demo episode
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro
	$(BIN)/octopus tasks check
	$(BIN)/octopus sim run $$($(BIN)/octopus tasks list --split eval_seen --json | head -1 | $(PY) -c "import json,sys; print(json.loads(sys.stdin.readline())['id'])") --agent oracle

test: install  ## the test suite
	$(BIN)/pytest

bench: install  ## simulator throughput (symbolic steps/s, goal checks/s)
	$(BIN)/octopus sim bench --json
	$(BIN)/octopus sim bench --json --distractors 12

clean-cache:  ## drop the cached task suite (rebuilt on next use)
	rm -rf $${OCTOPUS_CACHE:-$$HOME/.cache/octopus}
