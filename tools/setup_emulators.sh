#!/usr/bin/env bash
# Installs the BigQuery emulator the tests run against, into the repo's git-ignored cache.
#
#   .cache/emulators/local-bigquery/   local-bigquery 0.3.2 in its own Python 3.13 venv
#   .cache/emulators/bqemulator/       fallback when no Python 3.13 exists: bqemulator 1.4.0
#   .cache/emulators/home/             the HOME the emulator runs with: DuckDB looks for its
#                                      extensions in $HOME/.duckdb, and offline it cannot
#                                      download them, so they are unpacked there from wheels
#   .cache/emulators/backend           which of the two was installed (read by the fixtures)
#
# Idempotent: an existing venv is reused, pip skips what is installed. The GCS emulator needs
# no venv of its own; it is in the project's dev extras. Usage: setup_emulators.sh [PYTHON]
# where PYTHON is the project's interpreter, used for the bqemulator fallback. Re-run it after
# switching (the backend file says which one the tests start).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache/emulators"
EMU_HOME="$CACHE/home"
FALLBACK_PYTHON="${1:-python3}"
DUCKDB=1.5.5
mkdir -p "$CACHE" "$EMU_HOME"

find_python313() {
    local candidate
    for candidate in "${PYTHON313:-}" \
        "$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3" \
        "$(command -v python3.13 || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 13))'; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

pip_quiet() {
    # The machine's pip config lists optional local indexes; their "ignored" notes are noise.
    "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}

unpack_extensions() {  # venv, extensions...
    local venv="$1"
    shift
    HOME="$EMU_HOME" "$venv/bin/python" - "$@" <<'PY'
import sys
from duckdb_extensions import import_extension

for name in sys.argv[1:]:
    import_extension(name)
PY
}

# BTC_ASSETS_FORCE_BQEMULATOR=1 installs the fallback even where Python 3.13 exists, to test it.
if [ -z "${BTC_ASSETS_FORCE_BQEMULATOR:-}" ] && PY313="$(find_python313)"; then
    venv="$CACHE/local-bigquery"
    [ -x "$venv/bin/python" ] || "$PY313" -m venv "$venv"
    pip_quiet "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "local-bigquery==0.3.2" "duckdb==$DUCKDB" "duckdb-extensions==$DUCKDB" \
        "duckdb-extension-icu==$DUCKDB" "duckdb-extension-ducklake==$DUCKDB" \
        "duckdb-extension-json==$DUCKDB" "duckdb-extension-spatial==$DUCKDB" \
        "duckdb-extension-httpfs==$DUCKDB"
    unpack_extensions "$venv" icu ducklake json spatial httpfs
    echo "local-bigquery" > "$CACHE/backend"
    echo "BigQuery emulator: local-bigquery 0.3.2 on $("$venv/bin/python" -V)"
else
    if [ -n "${BTC_ASSETS_FORCE_BQEMULATOR:-}" ]; then
        echo "BTC_ASSETS_FORCE_BQEMULATOR is set: installing the bqemulator fallback" >&2
    else
        echo "No Python 3.13 found (pyenv 3.13.0, python3.13, or \$PYTHON313):" \
            "falling back to bqemulator 1.4.0; tests skip what it lacks and say so." >&2
    fi
    venv="$CACHE/bqemulator"
    [ -x "$venv/bin/python" ] || "$FALLBACK_PYTHON" -m venv "$venv"
    # Without numpy the server dies on the first query; without spatial it refuses to start.
    pip_quiet "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "bqemulator==1.4.0" "duckdb==$DUCKDB" "duckdb-extensions==$DUCKDB" \
        "duckdb-extension-spatial==$DUCKDB" numpy
    unpack_extensions "$venv" spatial
    if [ -n "${BTC_ASSETS_FORCE_BQEMULATOR:-}" ] && [ -f "$CACHE/backend" ]; then
        # Forced next to an installed local-bigquery: leave the default as it is.
        echo "bqemulator installed; run the tests with BTC_ASSETS_BQ_EMULATOR=bqemulator"
    else
        echo "bqemulator" > "$CACHE/backend"
    fi
    echo "BigQuery emulator: bqemulator 1.4.0 (fallback) on $("$venv/bin/python" -V)"
fi
