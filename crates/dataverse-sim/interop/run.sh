#!/usr/bin/env bash
# Interop check: starts dataverse-sim (sim.sh), runs interop.mjs (DynamicsWebApi, an independent Dataverse client)
# against it, always stops it, and exits with the script's status. Talks to nothing but loopback and, when
# node_modules is missing, the npm registry (npm ci).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v node >/dev/null || { echo "interop: node is not installed (node 20 or later is needed)" >&2; exit 2; }
command -v npm >/dev/null || { echo "interop: npm is not installed" >&2; exit 2; }
# shellcheck source=sim.sh
source "$here/sim.sh"

if [[ ! -d "$here/node_modules" ]]; then
  echo "interop: installing the pinned npm packages (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
start_sim interop

# The script must reach only the emulator: no proxy, and trust the CA the emulator generated.
status=0
(
  cd "$here"
  only_loopback
  export NODE_EXTRA_CA_CERTS="$work/ca.pem"
  export DATAVERSE_URL="$instance"
  export EXPECTED_CONTACTS=$((contacts + demo_rows))
  exec timeout 90 node interop.mjs
) || status=$?
if [[ $status -ne 0 ]]; then
  echo "interop: failed (status $status); emulator log:" >&2
  sim_log_tail
fi
exit "$status"
