#!/usr/bin/env bash
# Runs the fuzz targets one after another for SECONDS each (default 600, the figure docs/reliability.md reports),
# then minimises each target's corpus and prints the executions per target.
#
#   fuzz/run.sh             # every target, 10 minutes each
#   fuzz/run.sh 20          # smoke: every target, 20 seconds each
#   fuzz/run.sh 600 page_json error_body
#
# cargo-fuzz builds with nightly-only flags (-Zsanitizer=address and others). Only the stable toolchain is installed
# here, so RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. Debug assertions are on, so an integer overflow
# panics instead of wrapping silently. Builds and fuzzing use one core at the lowest priority, because the machine is
# shared. Crashes are written to fuzz/artifacts/<target>/ (not committed).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(batch_response page_json error_body config_toml mapping_toml)
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io (a few minutes)"
  nice -n 19 cargo install cargo-fuzz --locked
fi

mkdir -p logs
summary=()
failed=0
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  rm -f fuzz-0.log
  status=0
  # -jobs=1 -workers=1: one fuzzing process (libFuzzer writes its output to fuzz-0.log), one core.
  nice -n 19 cargo fuzz run --debug-assertions "$target" -- \
    -max_total_time="$seconds" -jobs=1 -workers=1 -print_final_stats=1 || status=$?
  mv -f fuzz-0.log "logs/$target.log" 2>/dev/null || true
  tail -n 20 "logs/$target.log" 2>/dev/null || true
  execs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" 2>/dev/null | tail -n1 | grep -o '[0-9]*$' || true)
  rate=$(grep -ho 'stat::average_exec_per_sec: *[0-9]*' "logs/$target.log" 2>/dev/null | tail -n1 | grep -o '[0-9]*$' || true)
  crash=$(ls "artifacts/$target" 2>/dev/null | wc -l)
  if [ "$status" -ne 0 ]; then
    failed=1
  else
    # Edge coverage only (no hit counts): a corpus a fraction of the size that reaches the same code.
    nice -n 19 cargo fuzz cmin --debug-assertions "$target" -- -use_counters=0 >"logs/$target.cmin.log" 2>&1 || true
  fi
  files=$(ls "corpus/$target" | wc -l)
  bytes=$(du -sb "corpus/$target" | cut -f1)
  summary+=("$(printf '%-15s exit %-3s execs %-12s execs/s %-8s corpus %5s files %9s bytes  artifacts %s' \
    "$target" "$status" "${execs:-?}" "${rate:-?}" "$files" "$bytes" "$crash")")
done

echo
echo "== fuzzing summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
