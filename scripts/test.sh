#!/usr/bin/env bash
# Runs the whole test suite (what `make test` and `.ci/run` call).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# docker-compose (Debian's package; no engine needed) checks docker-compose.yml.
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian's docker-compose (for the compose file check)"
  (apt-get install -y -qq docker-compose >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq docker-compose >/dev/null; }) \
    || echo "   could not install docker-compose; its test will skip (or fail in CI)"
fi

# Headless Chromium for the browser tests, from Debian's packages (Playwright never downloads one).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian's chromium (for the browser tests)"
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }) \
    || echo "   could not install chromium; the browser tests will skip (or fail in CI)"
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== import contracts"
.venv/bin/lint-imports --no-cache --no-logo

echo "== types (mypy --strict on ml/engine)"
.venv/bin/mypy

echo "== migrations are up to date"
$PY manage.py makemigrations --check --dry-run >/dev/null

echo "== check --deploy with production settings"
DEBUG=false SECRET_KEY="ci-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  ALLOWED_HOSTS=skinsense.example.org $PY manage.py check --deploy --fail-level WARNING

# Real PostgreSQL when it answers: the whole suite then runs on it.
if [ -z "${DATABASE_URL:-}" ] && $PY - <<'PYEOF'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PYEOF
then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/skinsense"
  # A test database of this run's own, so two checkouts can test at the same time.
  export TEST_DATABASE_NAME="${TEST_DATABASE_NAME:-test_skinsense_$$}"
fi
echo "== pytest (database: ${DATABASE_URL:-SQLite})"
$PY -m pytest "$@"
