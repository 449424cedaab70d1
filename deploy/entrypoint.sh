#!/bin/sh
# Container entrypoint (runs the same outside Docker): make the bundled sample runs when
# missing, then serve the dashboard with the production Streamlit config.
#   PORT (8501), ADDRESS (0.0.0.0), PYTHON (python3), CLASSLENS_STREAMLIT_CONFIG
#   (deploy/streamlit-config.toml); extra arguments go to `streamlit run`.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PORT="${PORT:-8501}"
ADDRESS="${ADDRESS:-0.0.0.0}"
CONFIG="${CLASSLENS_STREAMLIT_CONFIG:-deploy/streamlit-config.toml}"

# Cached runs make this instant after the first start.
"$PYTHON" -m core.sample

flags=$("$PYTHON" deploy/config_flags.py "$CONFIG")
# One flag per line, no spaces inside a flag: split on newlines only.
IFS='
'
# shellcheck disable=SC2086
set -- $flags "$@"
unset IFS
exec "$PYTHON" -m streamlit run app.py --server.port "$PORT" --server.address "$ADDRESS" "$@"
