# Two entry points, each safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test install bench browser

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
