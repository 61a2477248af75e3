#!/usr/bin/env bash
# Checks the deployment kit offline, as CI runs it (.ci/run):
#  1. the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, strict: unknown fields fail);
#  2. the ConfigMap's sync.toml with the example Secret's values, through `sync-worker config check` and the same
#     _FILE variables the pods use;
#  3. the Prometheus rules (`promtool check rules`), their unit tests (`promtool test rules`) and the scrape config;
#  4. the systemd units (`systemd-analyze verify`, any warning fails);
#  5. the systemd units' command lines, environment and credentials, run against the emulator (rehearse.py): the
#     nightly `run`, then `health-check`;
#  6. the Containerfile: its toolchain matches rust-version, it runs as a non-root user on a base without a shell.
# Installs what it needs (pip into a venv under target/, Debian's prometheus package for promtool). Only that talks
# to a registry; the checks talk to loopback only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../crates/dataverse-sim/interop/sim.sh
source "$here/../crates/dataverse-sim/interop/sim.sh"
cd "$root"

step() { printf 'deploy check: %s\n' "$*" >&2; }

# 1. Kubernetes manifests.
venv="$root/target/deploy-check"
if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
  step "installing kubernetes-validate into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
step "Kubernetes manifests against the 1.37 schemas"
"$venv/bin/kubernetes-validate" --strict --quiet -k 1.37.0 deploy/kubernetes/*.yaml

# 2. The ConfigMap's configuration with the example Secrets, as the pods see them.
cargo build --locked --quiet -p sync-worker -p health-check
target_dir="$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/debug"
step "the ConfigMap's sync.toml with the example Secrets (sync-worker config check)"
"$venv/bin/python" - "$work/k8s" <<'PY'
import sys, pathlib, yaml
out = pathlib.Path(sys.argv[1])
for doc in yaml.safe_load_all(open("deploy/kubernetes/configmap.yaml")):
    (out / "etc").mkdir(parents=True, exist_ok=True)
    (out / "etc" / "sync.toml").write_text(doc["data"]["sync.toml"])
for doc in yaml.safe_load_all(open("deploy/kubernetes/secret.example.yaml")):
    folder = out / "secrets" / doc["metadata"]["name"]
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in doc["stringData"].items():
        (folder / key).write_text(value)
PY
# The variables of the sync CronJob's container, with /run/secrets moved to the scratch folder.
mapfile -t k8s_env < <("$venv/bin/python" - "$work/k8s" <<'PY'
import sys, yaml
doc = yaml.safe_load(open("deploy/kubernetes/cronjob-sync.yaml"))
container = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
for var in container["env"]:
    print(f'{var["name"]}={var["value"].replace("/run/secrets", sys.argv[1] + "/secrets")}')
PY
)
env -i PATH="$PATH" "${k8s_env[@]}" "$bin/sync-worker" --config "$work/k8s/etc/sync.toml" config check >"$work/k8s/check.out"
grep -q "client secret          set  (DYNAMICS_CLIENT_SECRET_FILE $work/k8s/secrets/hlf-dynamics/client-secret" "$work/k8s/check.out" ||
  { cat "$work/k8s/check.out" >&2; echo "deploy check: config check did not read the client secret from its file" >&2; exit 1; }
# The dashboard Deployment's variables: its admin credential and the read-only metrics token, both from files.
mapfile -t dashboard_env < <("$venv/bin/python" - "$work/k8s" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open("deploy/kubernetes/dashboard.yaml")) if d["kind"] == "Deployment"]
for var in docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]:
    print(f'{var["name"]}={var["value"].replace("/run/secrets", sys.argv[1] + "/secrets")}')
PY
)
env -i PATH="$PATH" "${dashboard_env[@]}" "$bin/sync-worker" --config "$work/k8s/etc/sync.toml" config check >"$work/k8s/dashboard.out"
for expected in "bearer token set" "0.0.0.0:8088 (http behind a TLS proxy)" "metrics token            set (SYNC_METRICS_TOKEN): reads /metrics only"; do
  grep -q "$expected" "$work/k8s/dashboard.out" ||
    { cat "$work/k8s/dashboard.out" >&2; echo "deploy check: the dashboard's config check lacks '$expected'" >&2; exit 1; }
done

# 3. Prometheus.
if ! command -v promtool >/dev/null 2>&1; then
  step "installing Debian's prometheus package for promtool"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
step "Prometheus rules, their unit tests and the scrape config"
(cd deploy/prometheus && promtool check rules alerts.yaml && promtool test rules alerts.test.yaml) >&2
mkdir -p "$work/prometheus"
cp deploy/prometheus/alerts.yaml "$work/prometheus/"
echo "token" >"$work/prometheus/token"
sed "s#/etc/prometheus/secrets/hlf-sync-dashboard/metrics-token#$work/prometheus/token#" deploy/prometheus/prometheus.yml \
  >"$work/prometheus/prometheus.yml"
promtool check config "$work/prometheus/prometheus.yml" >&2

# 4. systemd units: the binaries' paths must exist for verify, so it sees copies pointing at the built ones.
step "systemd units (systemd-analyze verify)"
mkdir -p "$work/units"
for unit in deploy/systemd/*.service deploy/systemd/*.timer; do
  sed "s#/usr/local/bin/#$bin/#" "$unit" >"$work/units/$(basename "$unit")"
done
if ! verify="$(cd "$work/units" && systemd-analyze verify --man=no ./*.service ./*.timer 2>&1)" || [[ -n "$verify" ]]; then
  # Without systemd as PID 1 (a container), verify cannot load units that depend on the running manager; only
  # complaints about the units' own text count.
  problems="$(grep -v -e 'Failed to connect' -e 'System has not been booted' -e 'Failed to initialize manager' <<<"$verify" || true)"
  if [[ -n "$problems" ]]; then
    echo "$verify" >&2
    exit 1
  fi
fi

# 5. The units' command lines against the emulator.
start_sim "deploy check"
rehearse() {
  local unit="$1"
  python3 deploy/rehearse.py --unit "deploy/systemd/$unit" --config deploy/systemd/sync.toml --bin-dir "$bin" \
    --emulator "$instance" --ca "$work/ca.pem" --root "$work/rehearsal" \
    --tenant-id 7d3a7f8e-0b4c-4a6e-9c51-2f1e5d4c3b2a --client-id 2b9c4e1a-6f3d-4c8b-a7e5-9d0f1e2c3b4a \
    --client-secret dataverse-sim-secret
}
step "sync-worker.service against the emulator"
status=0
(only_loopback; rehearse sync-worker.service) >"$work/run.out" 2>"$work/run.err" || status=$?
if [[ $status -ne 0 ]] || ! grep -q "succeeded" "$work/run.out"; then
  cat "$work/run.out" "$work/run.err" >&2
  echo "deploy check: sync-worker.service's command failed against the emulator (status $status)" >&2
  sim_log_tail
  exit 1
fi
sed 's/^/  | /' "$work/run.out" >&2
grep -q '"run started"\|run started' "$work/run.err" ||
  { cat "$work/run.err" >&2; echo "deploy check: no INFO line from the unit's run (RUST_LOG)" >&2; exit 1; }
step "sync-health-check.service against the emulator"
status=0
(only_loopback; rehearse sync-health-check.service) >"$work/health.out" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
  cat "$work/health.out" >&2
  echo "deploy check: health-check after a good run should exit 0 (status $status)" >&2
  exit 1
fi
sed 's/^/  | /' "$work/health.out" >&2

# 6. The Containerfile (CI has no container engine: its text is checked, not built).
step "Containerfile"
rust_version="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)"
grep -q "^FROM docker.io/library/rust:$rust_version-bookworm AS build" deploy/Containerfile ||
  { echo "deploy check: the Containerfile's build image is not rust:$rust_version (Cargo.toml's rust-version)" >&2; exit 1; }
grep -q '^FROM gcr.io/distroless/cc-debian12:nonroot$' deploy/Containerfile ||
  { echo "deploy check: the Containerfile's runtime base is not distroless (no shell) nonroot" >&2; exit 1; }
grep -q '^USER 65532:65532$' deploy/Containerfile ||
  { echo "deploy check: the Containerfile does not run as user 65532" >&2; exit 1; }
for manifest in deploy/kubernetes/cronjob-*.yaml deploy/kubernetes/dashboard.yaml; do
  grep -q 'runAsUser: 65532' "$manifest" || { echo "deploy check: $manifest does not run as 65532" >&2; exit 1; }
done
# The runtime base has glibc and libgcc only: the binaries must need nothing else.
extra="$(ldd "$bin/sync-worker" "$bin/health-check" | grep '=>' | grep -v -E 'lib(c|m|gcc_s|pthread|dl|rt)\.so' || true)"
if [[ -n "$extra" ]]; then
  echo "deploy check: the binaries link libraries the distroless base lacks:" >&2
  echo "$extra" >&2
  exit 1
fi
step "all checks passed"
