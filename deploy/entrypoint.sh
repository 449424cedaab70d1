#!/bin/sh
# Container entrypoint (runs the same outside Docker): make the bundled sample runs when
# missing, then serve the dashboard with the production Streamlit config, in hosted mode.
#   PORT (8501), ADDRESS (127.0.0.1: loopback, for a reverse proxy on this host; the Docker
#   image sets 0.0.0.0), CLASSLENS_HOSTED (1), PYTHON (python3), CLASSLENS_STREAMLIT_CONFIG
#   (deploy/streamlit-config.toml); extra arguments go to `streamlit run`.
# Local mode (CLASSLENS_HOSTED=0: no login, code-bearing checkpoints allowed) is served on
# loopback only, unless CLASSLENS_LOCAL_ON_NETWORK=1 says that is really meant.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PORT="${PORT:-8501}"
ADDRESS="${ADDRESS:-127.0.0.1}"
CONFIG="${CLASSLENS_STREAMLIT_CONFIG:-deploy/streamlit-config.toml}"
# Empty counts as unset, as in core/hosting/settings.py.
CLASSLENS_HOSTED="${CLASSLENS_HOSTED:-1}"
export CLASSLENS_HOSTED

# The effective security settings on stderr; a misconfiguration, or local mode beyond
# loopback, stops here before anything is served.
"$PYTHON" -m core.hosting.settings --address "$ADDRESS"

# Cached runs make this instant after the first start.
"$PYTHON" -m core.engine.sample

flags=$("$PYTHON" deploy/config_flags.py "$CONFIG")
# One flag per line, no spaces inside a flag: split on newlines only.
IFS='
'
# shellcheck disable=SC2086
set -- $flags "$@"
unset IFS
exec "$PYTHON" -m streamlit run app.py --server.port "$PORT" --server.address "$ADDRESS" "$@"
