#!/usr/bin/env bash
# Interop check: builds dataverse-sim, starts it on a free loopback port over HTTPS with seeded rows, runs
# interop.mjs (DynamicsWebApi, an independent Dataverse client) against it, always stops it, and exits with the
# script's status. Talks to nothing but loopback and, when node_modules is missing, the npm registry (npm ci).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
contacts=250
mentors=50
# The bundled demo rows (fixtures/sim/data/contacts.json) are seeded as well as the generated ones.
demo_rows=5

command -v node >/dev/null || { echo "interop: node is not installed (node 20 or later is needed)" >&2; exit 2; }
command -v npm >/dev/null || { echo "interop: npm is not installed" >&2; exit 2; }

echo "interop: building dataverse-sim" >&2
(cd "$root" && cargo build -p dataverse-sim --bin dataverse-sim --locked --quiet)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps --locked | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
bin="$target_dir/debug/dataverse-sim"

if [[ ! -d "$here/node_modules" ]]; then
  echo "interop: installing the pinned npm packages (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

work="$(mktemp -d)"
sim_pid=""
cleanup() {
  if [[ -n "$sim_pid" ]] && kill -0 "$sim_pid" 2>/dev/null; then
    kill -INT "$sim_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$sim_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port 0: the emulator picks a free port and prints its instance URL.
RUST_LOG="${RUST_LOG:-warn}" "$bin" --host 127.0.0.1 --port 0 --seed 1 \
  --generate-contacts "$contacts" --generate-mentors "$mentors" \
  --ca-cert-out "$work/ca.pem" >"$work/stdout" 2>"$work/stderr" &
sim_pid=$!

instance=""
for _ in $(seq 1 300); do
  instance="$(sed -n 's/^  instance url : //p' "$work/stdout")"
  [[ -n "$instance" ]] && break
  if ! kill -0 "$sim_pid" 2>/dev/null; then
    echo "interop: dataverse-sim exited before listening:" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$instance" ]]; then
  echo "interop: dataverse-sim did not print its instance url within 30 s" >&2
  cat "$work/stderr" >&2
  exit 1
fi
case "$instance" in
  https://127.0.0.1:*) ;;
  *) echo "interop: unexpected instance url '$instance' (expected https on 127.0.0.1)" >&2; exit 1 ;;
esac
echo "interop: dataverse-sim listening at $instance" >&2

# The script must reach only the emulator: no proxy, and trust the CA the emulator generated.
status=0
(
  cd "$here"
  unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
  export NO_PROXY='*'
  export NODE_EXTRA_CA_CERTS="$work/ca.pem"
  export DATAVERSE_URL="$instance"
  export EXPECTED_CONTACTS=$((contacts + demo_rows))
  exec timeout 90 node interop.mjs
) || status=$?
if [[ $status -ne 0 ]]; then
  echo "interop: failed (status $status); emulator log:" >&2
  tail -n 40 "$work/stderr" >&2
fi
exit "$status"
