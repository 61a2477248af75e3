#!/usr/bin/env bash
# Browser end-to-end check of the admin dashboard: builds sync-worker, starts `sync-worker demo --serve` on a free
# loopback port with its database in a scratch folder, drives it in Debian's headless Chromium (dashboard.mjs), then
# checks in the database itself that the conflict was resolved and the record requeued. Always stops the demo.
# Talks to nothing but loopback and, when node_modules is missing, the npm registry (npm ci).
# SCREENSHOT=path saves the bokmål overview (default: docs/dashboard-overview.png in the repository) and
# SCREENSHOT_EN=path the English one (default: docs/dashboard-overview-en.png).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"

command -v node >/dev/null || { echo "e2e: node is not installed (node 20 or later is needed)" >&2; exit 2; }
command -v npm >/dev/null || { echo "e2e: npm is not installed" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "e2e: the sqlite3 command is not installed (apt-get install -y sqlite3)" >&2; exit 2; }
[[ -x "$chromium" ]] || { echo "e2e: $chromium is missing (apt-get install -y chromium)" >&2; exit 2; }

echo "e2e: building sync-worker" >&2
(cd "$root" && cargo build -p sync-worker --bin sync-worker --locked --quiet)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps --locked | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
bin="$target_dir/debug/sync-worker"

if [[ ! -d "$here/node_modules" ]]; then
  echo "e2e: installing the pinned npm packages (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

# shellcheck source=../../../scripts/lib/background.sh
source "$root/scripts/lib/background.sh"
work="$(mktemp -d)"
demo_pid=""
cleanup() {
  stop_background "$demo_pid" TERM
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

db="$work/demo.db"
"$bin" demo --db "$db" --serve --bind 127.0.0.1:0 >"$work/stdout" 2>"$work/stderr" &
demo_pid=$!

waited=0
url="$(wait_for_output "$demo_pid" "$work/stdout" 's/^Dashboard: \(http:\/\/127\.0\.0\.1:[0-9]*\/\)$/\1/p' 1200)" ||
  waited=$?
case "$waited" in
  1) echo "e2e: the demo exited before serving the dashboard:" >&2 ;;
  2) echo "e2e: the demo did not print the dashboard URL within 120 s" >&2 ;;
esac
if [[ "$waited" -ne 0 ]]; then
  cat "$work/stdout" "$work/stderr" >&2
  exit 1
fi
credential="$(sed -n 's/^  sign in with any user name and the password \([0-9a-f]*\)$/\1/p' "$work/stdout")"
[[ -n "$credential" ]] || { echo "e2e: the demo printed no credential" >&2; cat "$work/stdout" >&2; exit 1; }
echo "e2e: demo dashboard at $url" >&2

status=0
(
  cd "$here"
  only_loopback
  export DASHBOARD_URL="$url" DASHBOARD_CREDENTIAL="$credential" CHROMIUM="$chromium"
  export SCREENSHOT="${SCREENSHOT:-$root/docs/dashboard-overview.png}"
  export SCREENSHOT_EN="${SCREENSHOT_EN:-$root/docs/dashboard-overview-en.png}"
  exec timeout 180 node dashboard.mjs
) || status=$?
if [[ $status -ne 0 ]]; then
  echo "e2e: the browser run failed (status $status); demo output:" >&2
  tail -n 40 "$work/stdout" "$work/stderr" >&2
  exit "$status"
fi

# The database itself, not only what the dashboard says about it.
conflict="$(sqlite3 "$db" "SELECT state || ':' || resolution FROM sync_conflict WHERE organisation_id = 'hlf'")"
failure="$(sqlite3 "$db" "SELECT state || ':' || attempts FROM failed_record
  WHERE organisation_id = 'hlf' AND record_key = 'hlf-mentor-unregistered-1' AND direction = 'push'")"
if [[ "$conflict" != "resolved:app" || "$failure" != "retrying:0" ]]; then
  echo "e2e: the database disagrees: conflict '$conflict' (want resolved:app), failed record '$failure' (want retrying:0)" >&2
  exit 1
fi
echo "e2e: database confirms: conflict $conflict, failed record hlf-mentor-unregistered-1 $failure" >&2
