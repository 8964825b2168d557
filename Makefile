# Development and CI entry points. `make run` starts the whole platform on loopback;
# `make test` is what CI runs (through .ci/run).

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Root runs apt-get itself; anyone else goes through sudo when there is one.
SUDO := $(shell if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null; then echo sudo; fi)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: install services chromium bench-tools migrate seed run lint test fmt clean

install: $(STAMP)

# Reinstalled only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ] && ! python3 -c 'import ensurepip' 2>/dev/null; then \
		$(APT) update && $(APT) install -y python3-venv; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

services: install
	$(PY) -m espsite.devservices ensure

chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		$(APT) update && $(APT) install -y chromium; \
	fi

# Postfix only for its smtp-sink (bench/send.py's sink): installed unconfigured ("No
# configuration": no main.cf, so nothing to start), and a master that started anyway is stopped.
# wrk: the HTTP load generator of bench/tracking.py.
bench-tools:
	@if ! command -v smtp-sink >/dev/null && [ ! -x /usr/sbin/smtp-sink ]; then \
		echo "postfix postfix/main_mailer_type select No configuration" \
			| $(SUDO) debconf-set-selections; \
		$(APT) update && $(APT) install -y --no-install-recommends postfix; \
	fi
	@if [ -f /etc/postfix/main.cf ] && $(SUDO) postfix status >/dev/null 2>&1; then \
		$(SUDO) postfix stop; \
	fi
	@if pgrep -f '^/usr/lib/postfix/sbin/master' >/dev/null; then \
		echo "A Postfix master is still running: stop it (postfix stop)." >&2; exit 1; \
	fi
	@command -v smtp-sink || ls /usr/sbin/smtp-sink
	@if ! command -v wrk >/dev/null; then \
		$(APT) update && $(APT) install -y --no-install-recommends wrk; \
	fi
	@command -v wrk

# Development targets: DEBUG=1 (keys generated under var/) unless DEBUG is already set.
run migrate seed: export DEBUG ?= 1

migrate: install services
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

run: install services migrate seed
	$(PY) manage.py runstack $(if $(PORT),--port $(PORT))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Two runs: the suite on 2 processes, then the serial tests (real worker processes, crash
# tests, the priority lane) alone on the machine. pytest exits 5 when it collects nothing:
# fine for one run when PYTEST_ARGS selects tests of the other only, never for both.
test: install services chromium
	$(MAKE) --no-print-directory lint
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest -n 2 -m "not serial" $(PYTEST_ARGS); parallel=$$?; \
	$(VENV)/bin/pytest -m serial $(PYTEST_ARGS); serial=$$?; \
	if [ $$parallel -eq 5 ] && [ $$serial -eq 5 ]; then exit 5; fi; \
	for code in $$parallel $$serial; do [ $$code -eq 0 ] || [ $$code -eq 5 ] || exit $$code; done

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Caches and rebuildable files only: var/'s development keys, media and sink mail stay.
clean:
	rm -rf var/static var/celerybeat-schedule* .pytest_cache .ruff_cache test-results build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -exec rm -rf {} +
