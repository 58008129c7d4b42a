#!/usr/bin/env bash
# Installs whatever the local stack and the tests need and is missing. Idempotent; safe to run every time.
#   - Python venv (.venv) with requirements-dev.txt (re-installed when the requirement files change)
#   - Azurite from npm (node_modules/, pinned in package.json; started with node directly, never npx)
#   - PostgreSQL server binaries from Debian (apt) when no initdb is found
#   - Chromium from Debian (apt) for the dashboard's browser test, when WANT_CHROMIUM=1 and it is missing
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
log() { printf '[bootstrap] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# --- Python
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "Python 3.11 or newer is needed (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then log "creating .venv"; "$PY" -m venv .venv; fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages (requirements-dev.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

# --- Node + Azurite
if ! command -v node >/dev/null; then log "installing nodejs + npm (apt)"; apt_install nodejs npm; fi
if [ ! -f node_modules/azurite/dist/src/azurite.js ]; then
  log "installing Azurite (npm)"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

# --- PostgreSQL server binaries
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing PostgreSQL (apt)"
  apt_install postgresql
fi

# --- Chromium (only for the dashboard browser test)
if [ "${WANT_CHROMIUM:-0}" = 1 ] && ! command -v chromium >/dev/null; then
  log "installing chromium (apt)"
  apt_install chromium
fi
log "ready"
