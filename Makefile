# Two commands for a newcomer: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint lock bench bench-ingest bench-hostile bench-drain bench-backfill bench-chaos bench-latency bench-lookup bench-verify translations screenshots browser clean

$(STAMP): pyproject.toml requirements.txt requirements-test.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-test.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m receiver.dev.run

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser test drives Debian's Chromium through its chromedriver (browser downloads do not
# work here): installed from Debian's packages on first use.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver for the browser test"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

lint: $(STAMP)
	$(BIN)/ruff check receiver tests bench

lock: $(STAMP)
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile -q pyproject.toml -o requirements.txt
	$(BIN)/uv pip compile -q pyproject.toml --extra test -o requirements-test.txt

# After changing a user-facing string: extract, merge into each language's catalog, compile.
translations: $(STAMP)
	$(BIN)/pybabel -q extract -F babel.cfg -k lazy_gettext -k _ --no-location -o receiver/translations/messages.pot .
	$(BIN)/pybabel -q update -i receiver/translations/messages.pot -d receiver/translations
	$(BIN)/pybabel -q compile -d receiver/translations

# The README's pictures of the guest's page, taken by the browser test.
screenshots: $(STAMP) browser
	RECEIVER_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/e2e/test_browser.py tests/e2e/test_console_browser.py

# Ingest rate against bare Flask (SQLite and PostgreSQL at 127.0.0.1:5432) and the web workers' memory.
bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

bench: bench-ingest

# Issue 11's measurement: one real worker against a dripping CRM and a gzip-bomb CRM while a third
# tenant delivers to the sandbox (PostgreSQL at 127.0.0.1:5432): peak RSS, the third tenant's deliveries.
bench-hostile: $(STAMP)
	$(BIN)/python bench/hostile.py $(BENCH_ARGS)

# Seconds from a STOP's receipt to its CRM Text call: web + worker + sandbox on PostgreSQL at
# 127.0.0.1:5432, 200 STOPs a second for 60 s; BENCH_ARGS=--quick for 10 s.
bench-latency: $(STAMP)
	$(BIN)/python bench/latency.py $(BENCH_ARGS)

# Drain rates per lane (PostgreSQL at 127.0.0.1:5432); BENCH_ARGS=--quick for a tenth of the counts.
bench-drain: $(STAMP)
	$(BIN)/python bench/drain.py --db postgres $(BENCH_ARGS)

# Backfill of 100,000 Twilio messages and 100,000 SendGrid suppressions from the sandbox (SQLite;
# DATABASE_URL=postgresql://… for PostgreSQL); BENCH_ARGS="--items 10000" for a smaller run.
bench-backfill: $(STAMP)
	$(BIN)/python bench/backfill.py $(BENCH_ARGS)

# PostgreSQL failures under steady load, on a throwaway cluster of its own (needs the PostgreSQL server
# binaries; run as root, the cluster runs as the postgres user); BENCH_ARGS=--quick for shorter phases.
bench-chaos: $(STAMP)
	$(BIN)/python bench/chaos.py $(BENCH_ARGS)

# /v1/consent p99 and ingest against a 10-million-signal ledger vs an empty one (PostgreSQL at
# 127.0.0.1:5432; ~22 GB of disk, ~30 min on 2 cores); BENCH_ARGS=--signals 1000000 for a tenth.
bench-lookup: $(STAMP)
	$(BIN)/python bench/lookup.py $(BENCH_ARGS)

# receiver verify on 1,000,000 chained signals in PostgreSQL (DATABASE_URL's server): time and peak RSS.
bench-verify: $(STAMP)
	$(BIN)/python bench/verify.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
