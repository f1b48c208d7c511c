# `make test` and `make demo` work on a fresh Debian machine with Python 3.11:
# each installs what it needs (a .venv with the packages of pyproject.toml, and
# Debian's dovecot-imapd and redis-server when they are missing).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck format bench bench-mux coverage dovecot redis python-venv venv clean

test: venv dovecot redis lint typecheck
	$(BIN)/pytest

demo: venv dovecot
	$(BIN)/python -m imapproxy demo

# The codec alone, then the relay against Dovecot (and nginx's mail proxy where
# Debian's nginx with libnginx-mod-mail is installed; the benchmark never installs it),
# then the rules engine's per-decision cost and relay throughput with the audit rule
# on vs off, then the part cache over a slow link, then 1,000 clients of 10 users with
# upstream connections shared vs not, then a slow reader of 10 MB on a shared
# connection. bench-mux runs the last two alone: bench/mux.py twice (every client of a
# mailbox sending the same commands, then --distinct, each its own), then mux_slow.py.
bench: venv dovecot
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/mux.py
	$(BIN)/python bench/mux_slow.py

bench-mux: venv dovecot
	$(BIN)/python bench/mux.py
	$(BIN)/python bench/mux.py --distinct
	$(BIN)/python bench/mux_slow.py

coverage: venv dovecot redis
	$(BIN)/coverage run -m pytest -q
	$(BIN)/coverage report

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The package strictly; tests and benchmarks relaxed (untyped test functions and
# untyped third-party libraries allowed), as STYLE.md asks.
typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy --allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls \
		--ignore-missing-imports tests bench

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory python-venv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's python3-venv (ensurepip), which a fresh Debian lacks.
python-venv:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "Python's venv module is incomplete: run 'sudo apt-get install python3-venv'" >&2; \
		exit 1; \
	fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null

# $(call apt-install,COMMAND,PATH,PACKAGE): Debian's PACKAGE, installed when COMMAND
# is missing (as root; otherwise say how). policy-rc.d keeps apt from starting the
# packaged system service: tests start private instances of their own.
define apt-install
	@if command -v $(1) >/dev/null 2>&1 || test -x $(2); then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "$(3) is missing: run 'sudo apt-get install $(3)' (or make as root)" >&2; \
		exit 1; \
	fi; \
	created=0; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created=1; \
	fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(3) >/dev/null; \
	status=$$?; \
	if [ $$created = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	exit $$status
endef

# The IMAP server of the tests, the demo and the benchmarks.
dovecot:
	$(call apt-install,dovecot,/usr/sbin/dovecot,dovecot-imapd)

# The Redis tier of the part cache, in the tests.
redis:
	$(call apt-install,redis-server,/usr/bin/redis-server,redis-server)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
