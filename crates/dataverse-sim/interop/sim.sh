# Shared by the interop checks (sourced, not run): builds dataverse-sim, starts it on a free loopback port over
# HTTPS with seeded rows, and stops it when the sourcing script exits. After `start_sim`: $instance (the instance
# URL, also the Azure AD authority), $work (a temporary directory with the emulator's CA in ca.pem), $sim_pid.
# Talks to nothing but loopback.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
contacts=250
mentors=50
# The bundled demo rows (fixtures/sim/data/contacts.json) are seeded as well as the generated ones.
demo_rows=5

# shellcheck source=../../../scripts/lib/background.sh
source "$root/scripts/lib/background.sh"

work="$(mktemp -d)"
sim_pid=""
stop_sim() {
  stop_background "$sim_pid" INT
  rm -rf "$work"
}
trap stop_sim EXIT
trap 'exit 130' INT TERM

# $1: the check's name, for messages.
start_sim() {
  local name="$1"
  echo "$name: building dataverse-sim" >&2
  (cd "$root" && cargo build -p dataverse-sim --bin dataverse-sim --locked --quiet)
  local target_dir
  target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  local bin="$target_dir/debug/dataverse-sim"

  # Port 0: the emulator picks a free port and prints its instance URL.
  RUST_LOG="${RUST_LOG:-warn}" "$bin" --host 127.0.0.1 --port 0 --seed 1 \
    --generate-contacts "$contacts" --generate-mentors "$mentors" \
    --ca-cert-out "$work/ca.pem" >"$work/stdout" 2>"$work/stderr" &
  sim_pid=$!

  local waited=0
  instance="$(wait_for_output "$sim_pid" "$work/stdout" 's/^  instance url : //p' 300)" || waited=$?
  case "$waited" in
    1) echo "$name: dataverse-sim exited before listening:" >&2 ;;
    2) echo "$name: dataverse-sim did not print its instance url within 30 s" >&2 ;;
  esac
  if [[ "$waited" -ne 0 ]]; then
    cat "$work/stderr" >&2
    exit 1
  fi
  case "$instance" in
    https://127.0.0.1:*) ;;
    *) echo "$name: unexpected instance url '$instance' (expected https on 127.0.0.1)" >&2; exit 1 ;;
  esac
  echo "$name: dataverse-sim listening at $instance" >&2
}

# The emulator's last log lines, after a failed check.
sim_log_tail() {
  tail -n 40 "$work/stderr" >&2
}
