# Two entry points, each safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test install bench browser adapters

$(INSTALLED): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/python launch.py

test: $(INSTALLED) browser
	$(VENV)/bin/python -m pytest -q

# Browser tests drive Debian's chromium (Playwright cannot download its own browser here); a Japanese font
# makes the screenshots readable. Installed when missing and we may (root); otherwise those tests skip.
browser:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi ipagothic; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipafont-gothic >/dev/null; \
		else echo "note: install chromium (and fonts-ipafont-gothic) to run the browser tests"; fi; \
	fi

bench: $(INSTALLED)
	$(VENV)/bin/python -m playground bench generation --json

# The shipped adapters, reproducibly (fixed seeds), from the project's own data: adapters/sft/v1 (LoRA SFT on
# data/sft), then adapters/rlhf/v1 (DPO on data/preferences, continuing from sft/v1), then adapters/rlhf/v2 (rlhf/v1
# with a refuse-or-answer decision, `train decision`). About 145 minutes on 2 CPU cores. Versions are never
# overwritten: to rebuild beside the shipped ones, `make adapters ADAPTERS=/tmp/rebuilt`.
ADAPTERS ?= adapters
SFT_STEPS ?= 260
DPO_STEPS ?= 304
adapters: $(INSTALLED)
	@if [ -e $(ADAPTERS)/sft/v1 ] || [ -e $(ADAPTERS)/rlhf/v1 ] || [ -e $(ADAPTERS)/rlhf/v2 ]; then \
		echo "$(ADAPTERS)/sft/v1, rlhf/v1 or rlhf/v2 exists and versions are never overwritten; build elsewhere: make adapters ADAPTERS=/tmp/rebuilt"; exit 1; fi
	$(VENV)/bin/python -m playground train sft --seed-only --name sft --adapters $(ADAPTERS) --steps $(SFT_STEPS) --db $(VENV)/adapter-runs.db
	$(VENV)/bin/python -m playground train dpo --seed-only --name rlhf --adapters $(ADAPTERS) --from $(ADAPTERS)/sft/v1 --steps $(DPO_STEPS) --sft-weight 0.3 --db $(VENV)/adapter-runs.db
	$(VENV)/bin/python -m playground train decision --seed-only --name rlhf --adapters $(ADAPTERS) --from $(ADAPTERS)/rlhf/v1 --db $(VENV)/adapter-runs.db
