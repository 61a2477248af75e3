# Sourced by the check scripts (not run): stopping a background process they started.

# stop_background PID SIGNAL: sends SIGNAL (INT, TERM) to PID, waits up to five seconds for it to exit, then kills it.
stop_background() {
  local pid="$1" signal="$2"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

# only_loopback: the calling (sub)shell uses no proxy, so a check reaches nothing but the local services it started.
only_loopback() {
  unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
  export NO_PROXY='*'
}

# wait_for_output PID FILE SED_EXPRESSION TENTHS: prints what `sed -n SED_EXPRESSION FILE` finds once the process PID
# has written it. Status 1 when PID exits first, 2 when TENTHS tenths of a second pass without it.
wait_for_output() {
  local pid="$1" file="$2" expression="$3" tenths="$4" found=""
  for _ in $(seq 1 "$tenths"); do
    found="$(sed -n "$expression" "$file")"
    if [[ -n "$found" ]]; then
      printf '%s\n' "$found"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 2
}
