# Shared by scripts/demo and scripts/test: make .venv (once) and install resnetlab into it.
# Usage: source scripts/_setup.sh [EXTRAS]   e.g. "dev"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "resnetlab needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# Reinstall only when pyproject.toml or the extras changed (the stamp records both).
stamp="$VENV/.resnetlab-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || ! grep -qxF -- "$want" "$stamp"; then
    echo "installing resnetlab${extras:+ [$extras]} into $VENV (torch==2.13.0 is pinned)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" 2> >(grep -v "^WARNING: Location" >&2)
    echo "$want" >> "$stamp"
fi
export PATH="$VENV/bin:$PATH"
