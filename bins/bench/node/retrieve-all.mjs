// The DynamicsWebApi side of `bench retrieve-all`: reads every contact of a running dataverse-sim with
// `retrieveAll` (which follows @odata.nextLink and returns all rows in one array) and prints one JSON line with the
// rows read, wall time, CPU time and the process's peak memory. Started by the bench binary; not a test.
//
// Settings (environment):
//   DATAVERSE_URL            instance URL, e.g. https://127.0.0.1:49152 (required)
//   DATAVERSE_TENANT_ID, DATAVERSE_CLIENT_ID, DATAVERSE_CLIENT_SECRET   the emulator's app (required)
//   SELECT                   comma-separated columns, the same $select the Rust side reads (required)
//   PAGE_SIZE                rows per page (default 5000, Dataverse's maximum)
// For HTTPS, point NODE_EXTRA_CA_CERTS at the CA the emulator wrote with --ca-cert-out.

import { DynamicsWebApi } from "dynamics-web-api";

const env = process.env;
function required(name) {
  const value = env[name];
  if (!value) {
    console.error(`retrieve-all: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const instance = required("DATAVERSE_URL").replace(/\/+$/, "");
const tenantId = required("DATAVERSE_TENANT_ID");
const clientId = required("DATAVERSE_CLIENT_ID");
const clientSecret = required("DATAVERSE_CLIENT_SECRET");
const select = required("SELECT").split(",");
const pageSize = Number(env.PAGE_SIZE ?? "5000");

// Client credentials against the emulator's token endpoint, fetched once: the read is far shorter than a token's
// lifetime.
let token = null;
async function acquireToken() {
  if (token) return token;
  const response = await fetch(`${instance}/${tenantId}/oauth2/v2.0/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      client_id: clientId,
      client_secret: clientSecret,
      grant_type: "client_credentials",
      scope: `${instance}/.default`,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.access_token !== "string") {
    throw new Error(`token request answered ${response.status}`);
  }
  token = body.access_token;
  return token;
}

const api = new DynamicsWebApi({
  serverUrl: instance,
  onTokenRefresh: acquireToken,
  propagateErrors: true,
  timeout: 120_000,
});

const cpuBefore = process.cpuUsage();
const started = process.hrtime.bigint();
const all = await api.retrieveAll({ collection: "contacts", select, maxPageSize: pageSize });
const wall = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = process.cpuUsage(cpuBefore);
const usage = process.resourceUsage();

console.log(
  JSON.stringify({
    rows: all.value.length,
    wall_s: wall,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    // resourceUsage().maxRSS is in kilobytes: the peak of the whole process since it started.
    peak_rss_mb: usage.maxRSS / 1024,
  }),
);
