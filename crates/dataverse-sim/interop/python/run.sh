#!/usr/bin/env bash
# Interop check with Microsoft's Python stack: starts dataverse-sim (../sim.sh), runs interop.py
# (PowerPlatform-Dataverse-Client, authenticating through azure-identity and MSAL) against it, always stops it, and
# exits with the script's status. The packages (pinned in requirements.txt) go into a virtual environment under the
# cargo target directory, made when missing; that step alone talks to PyPI, the check itself only to loopback.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v python3 >/dev/null || { echo "python interop: python3 is not installed" >&2; exit 2; }
# shellcheck source=../sim.sh
source "$here/../sim.sh"

venv="$root/target/interop-python"
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
  echo "python interop: installing the pinned packages into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi
start_sim "python interop"

status=0
(
  cd "$here"
  only_loopback
  # requests (under MSAL, azure-core and the Dataverse client) trusts the CA the emulator generated, and only it.
  export REQUESTS_CA_BUNDLE="$work/ca.pem"
  export DATAVERSE_URL="$instance"
  export DATAVERSE_AUTHORITY="$instance"
  export EXPECTED_CONTACTS=$((contacts + demo_rows))
  exec timeout 120 "$venv/bin/python" interop.py
) || status=$?
if [[ $status -ne 0 ]]; then
  echo "python interop: failed (status $status); emulator log:" >&2
  sim_log_tail
fi
exit "$status"
