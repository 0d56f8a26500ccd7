# The two commands: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench broker deploy-tools browser setup clean

setup: $(STAMP) broker deploy-tools browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# mosquitto 2.x from Debian: installed when missing and we are root, otherwise say how.
broker:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing mosquitto with apt-get"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null; \
		else \
			echo "mosquitto is missing. Install it, then run make again:"; \
			echo "    sudo apt-get install mosquitto"; \
			exit 1; \
		fi; \
	fi

# What the deployment tests check files with: nginx (`nginx -t` on deploy/nginx/) and
# systemd-analyze (`verify` on systemd/). Installed when missing and we are root;
# otherwise those two tests say why they skipped.
deploy-tools:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing$$missing with apt-get"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "Not installed:$$missing (the deployment tests that need them will skip)"; \
		fi; \
	fi

# Debian's chromium, which the browser tests (tests/web) drive through Playwright; Playwright
# never downloads a browser of its own. Installed when missing and we are root; otherwise
# the browser tests skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing chromium with apt-get"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
		else \
			echo "chromium is missing (the browser tests will skip). Install it with:"; \
			echo "    sudo apt-get install chromium"; \
		fi; \
	fi

demo: setup
	$(BIN)/telecentre-server demo

test: setup
	$(BIN)/ruff check protocol edge server tests bench firmware-config
	$(BIN)/ruff format --check protocol edge server tests bench firmware-config
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check protocol edge server tests bench firmware-config
	$(BIN)/ruff format --check protocol edge server tests bench firmware-config

bench: setup
	$(BIN)/python -m bench $(if $(filter-out 0,$(QUICK)),--quick)

clean:
	rm -rf $(VENV) .pytest_cache
