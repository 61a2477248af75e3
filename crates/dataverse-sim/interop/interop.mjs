// Interop check: drives a running dataverse-sim with DynamicsWebApi, an independent Dataverse client, the way a real
// integration would (client-credentials token from the token endpoint, paging, alternate-key upserts, $batch,
// change tracking), and fails with a clear message on the first difference from Dataverse's documented behaviour.
//
// Settings (environment):
//   DATAVERSE_URL            instance URL, e.g. https://127.0.0.1:49152 (required)
//   DATAVERSE_TENANT_ID      tenant id (default: the emulator's default app)
//   DATAVERSE_CLIENT_ID      client id (default: the emulator's default app)
//   DATAVERSE_CLIENT_SECRET  client secret (default: the emulator's well-known test secret)
//   DATAVERSE_TOKEN_URL      token endpoint (default: <DATAVERSE_URL>/<tenant>/oauth2/v2.0/token)
//   EXPECTED_CONTACTS        if set, the number of contacts the emulator was seeded with
// For HTTPS, point NODE_EXTRA_CA_CERTS at the CA the emulator wrote with --ca-cert-out.

import { DynamicsWebApi } from "dynamics-web-api";

const env = process.env;
const instance = (env.DATAVERSE_URL ?? "").replace(/\/+$/, "");
if (!instance) {
  fail("DATAVERSE_URL is not set; give the emulator's instance url, e.g. https://127.0.0.1:49152");
}
const tenantId = env.DATAVERSE_TENANT_ID ?? "7d3a7f8e-0b4c-4a6e-9c51-2f1e5d4c3b2a";
const clientId = env.DATAVERSE_CLIENT_ID ?? "2b9c4e1a-6f3d-4c8b-a7e5-9d0f1e2c3b4a";
const clientSecret = env.DATAVERSE_CLIENT_SECRET ?? "dataverse-sim-secret";
const tokenUrl = env.DATAVERSE_TOKEN_URL ?? `${instance}/${tenantId}/oauth2/v2.0/token`;
const expectedContacts = env.EXPECTED_CONTACTS ? Number(env.EXPECTED_CONTACTS) : undefined;

const PAGE = 40;
const summary = [];

function fail(message) {
  console.error(`interop: FAILED: ${message}`);
  process.exit(1);
}

function check(condition, message, detail) {
  if (!condition) {
    fail(detail === undefined ? message : `${message}\n  got: ${JSON.stringify(detail, null, 2)}`);
  }
}

/** Awaits a call that must fail; returns the error so the caller can check its status and code. */
async function expectError(what, promise) {
  try {
    const value = await promise;
    fail(`${what}: expected an error, got ${JSON.stringify(value)}`);
  } catch (e) {
    return e;
  }
}

// The token callback a real integration would give DynamicsWebApi: client credentials against the token
// endpoint, cached until five minutes before expiry.
let cached = null;
let tokenRequests = 0;
async function acquireToken() {
  const now = Date.now();
  if (cached && cached.expiresAt - 300_000 > now) {
    return cached.token;
  }
  tokenRequests += 1;
  const response = await fetch(tokenUrl, {
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
    fail(`token request to ${tokenUrl} answered ${response.status}: ${body.error_description ?? JSON.stringify(body)}`);
  }
  check(body.token_type === "Bearer", "token endpoint: token_type is not Bearer", body.token_type);
  check(Number.isInteger(body.expires_in) && body.expires_in > 300, "token endpoint: bad expires_in", body.expires_in);
  cached = { token: body.access_token, expiresAt: now + body.expires_in * 1000 };
  return cached.token;
}

const api = new DynamicsWebApi({
  serverUrl: instance,
  onTokenRefresh: acquireToken,
  // Errors surface as thrown errors with status and code instead of the legacy null/false results.
  propagateErrors: true,
  timeout: 30_000,
});

/** A GET of one row by key; null when Dataverse answers 404. */
async function retrieveOrNull(key, select) {
  try {
    return await api.retrieve({ collection: "contacts", key, select });
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

// (a) Paging: retrieveAll follows @odata.nextLink across pages of PAGE rows.
async function paging() {
  const total = await api.count({ collection: "contacts" });
  check(Number.isInteger(total) && total > 2 * PAGE, `contacts/$count: expected more than ${2 * PAGE} rows`, total);
  if (expectedContacts !== undefined) {
    check(total === expectedContacts, `contacts/$count: expected ${expectedContacts}`, total);
  }
  const first = await api.retrieveMultiple({ collection: "contacts", select: ["contactid"], maxPageSize: PAGE });
  check(first.value.length === PAGE, `first page: expected ${PAGE} rows`, first.value.length);
  check(typeof first.oDataNextLink === "string" && first.oDataNextLink.includes("$skiptoken="),
    "first page: no @odata.nextLink with a $skiptoken", first.oDataNextLink);

  const all = await api.retrieveAll({
    collection: "contacts",
    select: ["contactid", "hlf_membernumber", "firstname"],
    maxPageSize: PAGE,
  });
  check(all.value.length === total, `retrieveAll: expected ${total} rows`, all.value.length);
  const ids = new Set(all.value.map((r) => r.contactid));
  check(ids.size === total, "retrieveAll: a row was returned twice", { rows: all.value.length, distinct: ids.size });
  check(all.value.every((r) => typeof r["@odata.etag"] === "string" && r["@odata.etag"].startsWith('W/"')),
    "retrieveAll: a row lacks a weak @odata.etag");

  const filtered = await api.retrieveAll({
    collection: "contacts",
    select: ["contactid"],
    filter: "startswith(hlf_membernumber,'5000')",
    maxPageSize: 7,
  });
  const expected = all.value.filter((r) => (r.hlf_membernumber ?? "").startsWith("5000")).length;
  check(filtered.value.length === expected, `filtered retrieveAll: expected ${expected} rows`, filtered.value.length);
  const counted = await api.count({ collection: "contacts", filter: "startswith(hlf_membernumber,'5000')" });
  check(counted === expected, `$count=true with a filter: expected ${expected}`, counted);

  // A query longer than 2,000 characters is sent by DynamicsWebApi as a GET inside a $batch.
  const numbers = all.value.map((r) => r.hlf_membernumber).filter(Boolean).slice(0, 80);
  const longFilter = numbers.map((n) => `hlf_membernumber eq '${n}'`).join(" or ");
  check(longFilter.length > 2000, "test setup: the long filter is too short", longFilter.length);
  const viaBatch = await api.retrieveMultiple({ collection: "contacts", select: ["contactid"], filter: longFilter });
  check(viaBatch.value.length === numbers.length, `long filter sent as a batch: expected ${numbers.length} rows`,
    viaBatch.value.length);

  summary.push(`paging: ${total} contacts in ${Math.ceil(total / PAGE)} pages of ${PAGE}; $count, filters and a ` +
    `${longFilter.length}-character filter sent as a batch agree`);
  return all.value;
}

// (b) Upsert by the alternate key hlf_membernumber: update of an existing row, creation of a new one, and the
// If-Match / If-None-Match variants.
async function upserts(rows) {
  const existing = rows.find((r) => r.hlf_membernumber);
  check(existing, "no contact has a member number");
  const key = `hlf_membernumber='${existing.hlf_membernumber}'`;
  const before = await api.retrieve({ collection: "contacts", key, select: ["firstname", "lastname"] });
  check(before.contactid === existing.contactid, "retrieve by alternate key returned another row", before);

  const updated = await api.upsert({
    collection: "contacts",
    key,
    data: { firstname: "Interop" },
    returnRepresentation: true,
    select: ["firstname", "hlf_membernumber"],
  });
  check(updated.contactid === existing.contactid, "upsert of an existing key created a new row", updated);
  check(updated.firstname === "Interop", "upsert did not update firstname", updated);
  check(updated["@odata.etag"] !== before["@odata.etag"], "the etag did not change on update",
    { before: before["@odata.etag"], after: updated["@odata.etag"] });

  const newNumber = "990001";
  const newKey = `hlf_membernumber='${newNumber}'`;
  check((await retrieveOrNull(newKey, ["contactid"])) === null, `test setup: ${newNumber} already exists`);
  const createdId = await api.upsert({
    collection: "contacts",
    key: newKey,
    data: { firstname: "Nina", lastname: "Interop", emailaddress1: "nina.interop@example.invalid" },
  });
  const created = await api.retrieve({ collection: "contacts", key: newKey, select: ["firstname", "lastname"] });
  check(created.lastname === "Interop" && created.firstname === "Nina", "upsert did not create the row", created);
  check(createdId === created.contactid, "upsert: the id read from OData-EntityId is not the created row's id",
    { createdId, created: created.contactid });

  const createOnly = await expectError("upsert with If-None-Match: * on an existing key",
    api.upsert({ collection: "contacts", key: newKey, data: { firstname: "X" }, ifnonematch: "*" }));
  check(createOnly.status === 412, "If-None-Match: * on an existing row must answer 412", createOnly);

  const updateOnly = await expectError("upsert with If-Match: * on a missing key",
    api.upsert({ collection: "contacts", key: "hlf_membernumber='990999'", data: { firstname: "X" }, ifmatch: "*" }));
  check(updateOnly.status === 404, "If-Match: * on a missing row must answer 404", updateOnly);
  check((await retrieveOrNull("hlf_membernumber='990999'", ["contactid"])) === null,
    "If-Match: * on a missing row created it");

  const stale = await expectError("update with a stale If-Match etag",
    api.update({ collection: "contacts", key, data: { firstname: "Stale" }, ifmatch: before["@odata.etag"] }));
  check(stale.status === 412 && stale.code === "0x80060882", "a stale If-Match must answer 412, 0x80060882", stale);

  const current = await api.retrieve({ collection: "contacts", key, select: ["firstname"] });
  const notModified = await api.retrieve({
    collection: "contacts", key, select: ["firstname"], ifnonematch: current["@odata.etag"],
  });
  check(notModified === undefined || notModified === null || notModified.firstname === undefined,
    "If-None-Match with the current etag must answer 304 without a body", notModified);

  summary.push(`upsert: updated ${existing.hlf_membernumber}, created ${newNumber}; If-Match/If-None-Match ` +
    "answered 412/404/304 as documented");
  return { existing, createdId: created.contactid };
}

// (c) $batch: a change set with a Content-ID reference, GETs, a failing operation, with and without
// continue-on-error.
async function batches(rows) {
  const missing = "00000000-0000-0000-0000-00000000dead";
  const other = rows.find((r) => r.hlf_membernumber && r.hlf_membernumber !== "990001");

  api.startBatch();
  api.retrieveMultiple({ collection: "contacts", select: ["contactid"], filter: `hlf_membernumber eq '${other.hlf_membernumber}'` });
  api.create({ collection: "contacts", data: { firstname: "Batch", lastname: "One", hlf_membernumber: "990101" }, contentId: "1" });
  api.update({ contentId: "$1", data: { lastname: "One-Updated" } });
  api.retrieve({ collection: "contacts", key: missing, select: ["contactid"] });
  api.upsert({ collection: "contacts", key: "hlf_membernumber='990102'", data: { firstname: "Batch", lastname: "Two" } });
  const results = await api.executeBatch({ continueOnError: true });
  check(Array.isArray(results) && results.length === 5, "continue-on-error batch: expected 5 results", results);
  check(results[0].value?.length === 1 && results[0].value[0].contactid === other.contactid,
    "batch GET with a filter returned the wrong rows", results[0]);
  check(typeof results[1] === "string" && /^[0-9a-f-]{36}$/.test(results[1]), "batch create: expected the new id", results[1]);
  check(!(results[2] instanceof Error), "batch update through $1 failed", results[2]);
  check(results[3] instanceof Error && results[3].status === 404 && results[3].error?.code === "0x80040217",
    "batch GET of a missing row must fail with 404, 0x80040217", results[3]);
  check(!(results[4] instanceof Error), "batch upsert after a failed operation did not run (continue-on-error)", results[4]);
  const one = await api.retrieve({ collection: "contacts", key: results[1], select: ["lastname", "hlf_membernumber"] });
  check(one.lastname === "One-Updated" && one.hlf_membernumber === "990101", "the $1 reference did not update the created row", one);
  check((await retrieveOrNull("hlf_membernumber='990102'", ["contactid"])) !== null, "the batch upsert did not create its row");

  // Without continue-on-error the batch stops at the failing change set, which is rolled back as a whole.
  api.startBatch();
  api.create({ collection: "contacts", data: { firstname: "Rolled", lastname: "Back", hlf_membernumber: "990201" } });
  api.update({ collection: "contacts", key: missing, data: { firstname: "Nobody" }, ifmatch: "*" });
  api.retrieveMultiple({ collection: "contacts", select: ["contactid"], maxPageSize: 1 });
  api.create({ collection: "contacts", data: { firstname: "Never", lastname: "Run", hlf_membernumber: "990202" }, inChangeSet: false });
  let stopped;
  try {
    stopped = await api.executeBatch();
  } catch (e) {
    stopped = e;
  }
  check(Array.isArray(stopped), "a batch that fails without continue-on-error must be rejected with its parts", stopped);
  check(stopped.length === 1 && stopped[0] instanceof Error && stopped[0].status === 404,
    "a failing change set must be answered by the failing operation alone, and the batch stop there", stopped);
  check((await retrieveOrNull("hlf_membernumber='990201'", ["contactid"])) === null,
    "the failed change set was not rolled back");
  check((await retrieveOrNull("hlf_membernumber='990202'", ["contactid"])) === null,
    "the batch did not stop at the first error");

  summary.push("batch: 5 operations with continue-on-error (change set with $1, 404 in place, later parts ran); " +
    "without it the failing change set rolled back and the batch stopped");
}

// (d) Change tracking: an initial tracked read, changes, then the delta link returns changed and deleted rows.
async function changeTracking(rows, touched) {
  const initial = await api.retrieveAll({
    collection: "contacts",
    select: ["contactid", "firstname"],
    trackChanges: true,
    maxPageSize: 100,
  });
  check(initial.value.length > rows.length, "tracked read: expected every contact", initial.value.length);
  check(typeof initial.oDataDeltaLink === "string" && initial.oDataDeltaLink.includes("$deltatoken="),
    "tracked read: no @odata.deltaLink on the last page", initial.oDataDeltaLink);

  const victim = rows.find((r) => r.contactid !== touched.existing.contactid && r.contactid !== touched.createdId);
  await api.update({ collection: "contacts", key: touched.existing.contactid, data: { firstname: "Delta" } });
  await api.deleteRecord({ collection: "contacts", key: victim.contactid });
  const addedId = await api.create({ collection: "contacts", data: { firstname: "New", lastname: "Delta" } });

  const changed = [];
  const deleted = [];
  let link = initial.oDataDeltaLink;
  let nextDelta;
  let pages = 0;
  // One item a page, so the delta itself pages with nextLink ($deltatoken and $skiptoken) before its deltaLink.
  while (link) {
    const page = await api.retrieveMultiple({ collection: "contacts", maxPageSize: 1 }, link);
    pages += 1;
    for (const item of page.value) {
      if ((item["@odata.context"] ?? "").endsWith("$deletedEntity")) {
        check(item.reason === "deleted", "a $deletedEntity item lacks reason: deleted", item);
        deleted.push(item.id);
      } else {
        changed.push(item);
      }
    }
    link = page.oDataNextLink;
    nextDelta = page.oDataDeltaLink;
  }
  const changedIds = changed.map((r) => r.contactid);
  check(changedIds.includes(touched.existing.contactid), "delta: the updated row is missing", changedIds);
  check(changedIds.includes(addedId), "delta: the created row is missing", changedIds);
  check(changed.find((r) => r.contactid === touched.existing.contactid)?.firstname === "Delta",
    "delta: the updated row does not carry its new value", changed);
  check(deleted.length === 1 && deleted[0] === victim.contactid, "delta: expected exactly the deleted row", deleted);
  check(pages >= 3, "delta: three changes at one item a page must span at least three pages", pages);
  check(typeof nextDelta === "string" && nextDelta !== initial.oDataDeltaLink, "delta: no new @odata.deltaLink", nextDelta);

  const quiet = await api.retrieveMultiple({ collection: "contacts" }, nextDelta);
  check(quiet.value.length === 0, "delta after no changes must be empty", quiet.value);

  summary.push(`change tracking: ${initial.value.length} rows tracked, delta of ${changed.length} changed and ` +
    `${deleted.length} deleted in ${pages} page(s), then an empty delta`);
}

try {
  const rows = await paging();
  const touched = await upserts(rows);
  await batches(rows);
  await changeTracking(rows, touched);
} catch (e) {
  const detail = e instanceof Error ? `${e.status ?? ""} ${e.code ?? ""} ${e.message}`.trim() : JSON.stringify(e);
  fail(`unexpected error: ${detail}\n${e?.stack ?? ""}`);
}
summary.push(`token: ${tokenRequests} client-credentials request(s) to ${tokenUrl}`);
console.log(`interop: OK against ${instance} with dynamics-web-api`);
for (const line of summary) {
  console.log(`  - ${line}`);
}
process.exit(0);
