# Entry points for people; `dvc repro` and the Prefect flows call the `octopus` CLI underneath.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install sysdeps run test test-fast bench demo eval clean-cache ui ui-stop compare ablations storage storage-stop

# Offscreen rendering (MuJoCo on the CPU) needs Mesa's EGL and software GL driver from the system.
MESA_PKGS := libegl1 libegl-mesa0 libgl1-mesa-dri
sysdeps:  ## system libraries for offscreen rendering; installs them with apt-get when missing
	@if ldconfig -p | grep -q 'libEGL_mesa.so' && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing $(MESA_PKGS) for offscreen rendering"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(MESA_PKGS) >/dev/null; \
	else echo "offscreen rendering needs Mesa EGL: sudo apt-get install -y $(MESA_PKGS)" \
		"(or libosmesa6 and MUJOCO_GL=osmesa)"; exit 1; fi

$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: sysdeps $(VENV)/.installed  ## create the project virtualenv with every pinned dependency

DEMO_TASK = $$($(BIN)/octopus tasks list --split eval_seen --json | head -1 | $(PY) -c "import json,sys; print(json.loads(sys.stdin.readline())['id'])")

run: install  ## the main job on the embedded defaults: the pipeline through DVC (tasks ... sft, evaluate), demo episodes, the table
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro
	$(BIN)/octopus tasks check
	$(BIN)/octopus sim run $(DEMO_TASK) --agent oracle --save-views demo-views
	@# the trained policy on the same task: exit 1 (task not completed) is a result, not an error
	$(BIN)/octopus sim run $(DEMO_TASK) --agent policy --model models/sft/octopus > demo-policy.log; rc=$$?; \
		tail -n 3 demo-policy.log; echo "policy episode: demo-policy.log"; [ $$rc -le 1 ]
	@cat reports/evaluate.md

eval: install  ## the evaluate stage (reproducing what it needs through DVC), then the table
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro evaluate
	@cat reports/evaluate.md

test: install  ## the whole test suite (the README's and CI's test command)
	$(BIN)/pytest

test-fast: install  ## the edit loop: tests not marked slow (no servers, pools, subprocess CLIs or training)
	$(BIN)/pytest -m "not slow"

bench: install  ## simulator throughput, collection steps/min with 1 and 2 workers, no-op dvc repro time, SFT and policy speed
	$(BIN)/octopus bench sim --json
	$(BIN)/octopus bench sim --json --distractors 12 --no-render
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/octopus bench collect --json
	$(BIN)/octopus bench sft --json

compare: install  ## the workspace and every DVC experiment side by side: tables, reports/compare/compare.md and PNG plots
	$(BIN)/octopus compare

ABLATIONS ?=
ablations: install  ## queue the paper's ablations (Fig. 6) as DVC experiments and start them (ABLATIONS=a,b for some)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/octopus ablations --start $(if $(ABLATIONS),--only $(ABLATIONS))

STORAGE_PORT ?= 8333
storage: install  ## a local S3 store (SeaweedFS) on 127.0.0.1:$(STORAGE_PORT) as the extra DVC remote `s3` (docs/experiments.md)
	$(BIN)/octopus storage start --port $(STORAGE_PORT)

storage-stop: install  ## stop the store `make storage` started (its data stays in .storage/)
	$(BIN)/octopus storage stop

clean-cache:  ## drop the cached task suite (rebuilt on next use)
	rm -rf $${OCTOPUS_CACHE:-$$HOME/.cache/octopus}

# The Prefect UI on a real local server (schedules fire there, not on Prefect's temporary one): docs/ui.md
PORT ?=
ui: install  ## local Prefect server (SQLite in .prefect/), process pool + worker, prefect.yaml's deployments; prints the URL
	@$(BIN)/octopus ui start $(if $(PORT),--port $(PORT))

ui-stop:  ## end exactly what `make ui` started
	@$(BIN)/octopus ui stop
