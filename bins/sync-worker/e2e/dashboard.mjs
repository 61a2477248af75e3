// Drives the admin dashboard of `sync-worker demo --serve` in Debian's headless Chromium, as an HLF admin would:
// sign in through the browser's login prompt, read the overview in bokmål (the browser asks for nb-NO), switch to
// English with the keyboard, resolve a conflict, requeue a dead record, download the full CSV export, then confirm
// the actions through the JSON API; then axe-core on every page in both languages. Reaches nothing but the
// dashboard on loopback.
//
// Environment: DASHBOARD_URL (http://127.0.0.1:PORT/), DASHBOARD_CREDENTIAL, SCREENSHOT (where to save the bokmål
// overview, optional), SCREENSHOT_EN (the English one, optional), CHROMIUM (default /usr/bin/chromium).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const url = process.env.DASHBOARD_URL;
const credential = process.env.DASHBOARD_CREDENTIAL;
assert.ok(url && url.startsWith('http://127.0.0.1:'), `DASHBOARD_URL must be a loopback URL, got ${url}`);
assert.ok(credential, 'DASHBOARD_CREDENTIAL is required');

const step = (text) => console.log(`e2e: ${text}`);

/** Moves the keyboard focus with Tab, as someone without a mouse would, until `button` has it (at most 200 presses). */
async function tabTo(page, button) {
  const target = await button.elementHandle();
  for (let presses = 0; presses < 200; presses += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((el) => document.activeElement === el, target)) return presses + 1;
  }
  throw new Error(`Tab never reached ${await button.innerText()}`);
}

/** Presses Enter on the focused button or link and waits for the page it leads to. */
async function pressEnter(page, expected) {
  await Promise.all([page.waitForURL(expected, { timeout: 15000 }), page.keyboard.press('Enter')]);
}

/** Clicks a form's button and waits for the page it leads to; on failure says where the browser ended up. */
async function submit(page, button, expected) {
  try {
    await Promise.all([page.waitForURL(expected, { timeout: 15000 }), button.click()]);
  } catch (error) {
    const body = await page.locator('body').innerText().catch(() => '(no body)');
    throw new Error(`after the click the browser is at ${page.url()}, not ${expected}: ${body.slice(0, 800)}`, {
      cause: error,
    });
  }
}

// Without the credential, nothing but a login prompt.
{
  const response = await fetch(url);
  assert.equal(response.status, 401);
  assert.match(response.headers.get('www-authenticate') ?? '', /^Basic realm=/);
  step('without a credential the dashboard answers 401 with a login prompt');
}

const profile = mkdtempSync(join(tmpdir(), 'dashboard-e2e-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1280, height: 900 },
  // A Norwegian browser: Accept-Language nb-NO.
  locale: 'nb-NO',
  acceptDownloads: true,
  // The browser's basic-auth prompt, answered as an admin would: any user name, the credential as the password.
  httpCredentials: { username: 'admin', password: credential },
});
const problems = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    // A form POST answered with an attachment becomes a download, and Chromium reports the navigation as aborted.
    const download = request.method() === 'POST' && new URL(request.url()).pathname.endsWith('/export');
    if (download && request.failure()?.errorText === 'net::ERR_ABORTED') return;
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`);
  });
  page.on('request', (request) => {
    if (!request.url().startsWith(url)) problems.push(`request outside the dashboard: ${request.url()}`);
  });

  // The overview, in bokmål: the browser asks for it, and it is HLF's configured language.
  const response = await page.goto(url);
  assert.equal(response.status(), 200);
  const headers = response.headers();
  assert.match(headers['content-security-policy'], /default-src 'self'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['cache-control'], 'no-store');
  assert.equal(await page.locator('html').getAttribute('lang'), 'nb');
  assert.equal(await page.locator('h1').innerText(), 'Oversikt');
  assert.equal(await page.locator('section.org .badge').first().innerText(), 'svekket');
  const footer = await page.locator('footer').innerText();
  assert.match(footer, /kl\. \d\d:\d\d CE(S)?T\. Tidene er i tidssonen Europe\/Oslo/, 'local time with its zone');
  const relative = await page.locator('section.org dl.facts .muted').first().innerText();
  assert.match(relative, /akkurat nå|siden/, `a relative time beside the exact one: ${relative}`);
  const exact = await page.locator('section.org dl.facts time').first().getAttribute('title');
  assert.match(exact, /^\d{1,2}\.\d{1,2}\.\d{4} kl\. \d\d:\d\d CES?T$/, 'the exact time on hover');
  if (process.env.SCREENSHOT) {
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    step(`screenshot of the bokmål overview saved to ${process.env.SCREENSHOT}`);
  }
  step(`overview in bokmål: ${footer}`);

  // The switch, with the keyboard alone: Tab to "English", Enter; the choice is remembered in a cookie.
  const switchPresses = await tabTo(page, page.locator('nav.lang a[hreflang="en"]'));
  await pressEnter(page, (u) => u.pathname === new URL(url).pathname && !u.pathname.includes('/lang/'));
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  assert.equal(await page.locator('h1').innerText(), 'Overview');
  const cookies = await context.cookies(url);
  assert.ok(cookies.some((c) => c.name === 'hlf_dashboard_lang' && c.value === 'en' && c.httpOnly), 'remembered');
  step(`switched to English with ${switchPresses} Tab presses and Enter; the choice is kept in a cookie`);
  if (process.env.SCREENSHOT_EN) {
    await page.screenshot({ path: process.env.SCREENSHOT_EN, fullPage: true });
    step(`screenshot of the English overview saved to ${process.env.SCREENSHOT_EN}`);
  }
  const status = await page.locator('section.org .badge').first().innerText();
  const reason = await page.locator('section.org .reason').first().innerText();
  step(`overview: HLF (demo) is ${status}: ${reason}`);
  assert.equal(status, 'degraded', 'the demo leaves failed records and a conflict');
  const reasons = await page.locator('section.org ul.reasons li').allInnerTexts();
  assert.ok(reasons.some((r) => /2 records failed for good/.test(r)), `all reasons shown: ${reasons}`);
  const health = await (await page.request.get(new URL('api/health', url).href)).json();
  assert.equal(health[0].status, status, 'the overview shows the health monitor verdict');
  assert.deepEqual(health[0].reasons, reasons, 'with the same reasons, worst first');
  assert.equal(await page.locator('svg.chart g.run').count(), 2, 'one chart slot per demo run');
  assert.equal(
    await page.locator('details.chart-figures tbody tr').count(),
    2,
    "the chart's figures as a table, one row per run",
  );
  const facts = await page.locator('section.org dl.facts').first().innerText();
  assert.match(facts, /Conflicts to resolve\s+1/);
  assert.match(facts, /2 dead, 0 retrying/);
  const stylesheet = await page.evaluate(() => getComputedStyle(document.querySelector('header.top')).display);
  assert.equal(stylesheet, 'flex', 'the embedded stylesheet applies');

  // Resolve the conflict: keep the app's value.
  await page.getByRole('link', { name: 'Conflicts', exact: true }).click();
  await page.waitForURL(/\/conflicts$/);
  const card = page.locator('section.conflict.open');
  assert.equal(await card.count(), 1);
  const appValue = await card.locator('.side.app .value').innerText();
  const dynamicsValue = await card.locator('.side.dynamics .value').innerText();
  step(`conflict on ${await card.locator('h2').innerText()}: app "${appValue}" against Dynamics "${dynamicsValue}"`);
  // With the keyboard alone: Tab to the button, Enter.
  const presses = await tabTo(page, card.getByRole('button', { name: "Keep the app's value" }));
  await pressEnter(page, /\/conflicts\?notice=resolved$/);
  step(`conflict form reached with ${presses} Tab presses and sent with Enter`);
  assert.match(await page.locator('.notice').innerText(), /the next run writes the chosen value/);
  assert.match(await page.locator('section.conflict.resolved').innerText(), /Resolved: keep the app's value \(by admin \(bearer token\)\)/);
  step('conflict resolved in the browser: the next run writes the app value');

  // Requeue a dead record.
  await page.getByRole('link', { name: 'Failed records', exact: true }).click();
  await page.waitForURL(/\/failures$/);
  const row = page.locator('tr.failure', { hasText: '899990' });
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /no contact in Dynamics has the mentor's member number/);
  assert.equal(await row.locator('.state').innerText(), 'dead');
  await tabTo(page, row.getByRole('button', { name: 'Requeue' }));
  await pressEnter(page, /\/failures\?notice=requeued$/);
  assert.equal(await page.locator('tr.failure', { hasText: '899990' }).locator('.state').innerText(), 'retrying');
  step('dead record of member 899990 requeued in the browser');

  // Download the full CSV export, as HLF staff would for the Import Data wizard.
  await page.getByRole('link', { name: 'CSV export', exact: true }).click();
  await page.waitForURL(/\/export$/);
  assert.match(await page.locator('main .help').first().innerText(), /docs\/csv-fallback\.md/);
  const exportCard = page.locator('section.export').first();
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 15000 }),
    exportCard.getByRole('button', { name: 'Download the full export (CSV)' }).click(),
  ]);
  const fileName = download.suggestedFilename();
  assert.match(fileName, /^hlf-mentors-full-\d{8}T\d{6}Z-1\.csv$/);
  const csv = readFileSync(await download.path(), 'utf8');
  const lines = csv.split('\r\n');
  assert.equal(
    lines[0],
    '\uFEFFMedlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden',
    'the BOM and the display names of the mapping',
  );
  assert.ok(lines.some((line) => /^5\d{5},/.test(line)), 'the demo members Dynamics has are in the file');
  // 899990 has no contact in Dynamics: importing it would create one, so it is in the errors file instead.
  assert.ok(!lines.some((line) => line.startsWith('899990,')), 'a member Dynamics has no contact for is not imported');
  step(`full CSV export downloaded as ${fileName}: ${lines.filter((l) => l).length - 1} mentors`);

  // What the dashboard's JSON API says now.
  const conflicts = await (await page.request.get(new URL('api/conflicts', url).href)).json();
  assert.equal(conflicts.length, 1);
  assert.equal(conflicts[0].state, 'resolved');
  assert.equal(conflicts[0].resolution, 'app');
  const failures = await (await page.request.get(new URL('api/failures', url).href)).json();
  const requeued = failures.find((f) => f.member_number === '899990');
  assert.equal(requeued.state, 'retrying');
  assert.equal(requeued.attempts, 0);
  step('the JSON API confirms: conflict resolved (app), record 899990 retrying from zero attempts');

  assert.deepEqual(problems, [], 'no console errors, CSP violations, failed or outside requests');
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

// Accessibility: axe-core (pinned in package.json) on every page in both languages, in separate browser contexts
// that let its script past the dashboard's Content-Security-Policy (the dashboard itself runs no script). Fails on
// any violation of impact serious or critical.
{
  const axeSource = readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const pages = ['', 'runs', 'failures', 'conflicts', 'alerts', 'cache', 'export', 'config', 'config/privileges'];
    const serious = [];
    for (const [lang, locale] of [['nb', 'nb-NO'], ['en', 'en-GB']]) {
      const scan = await browser.newContext({
        bypassCSP: true,
        httpCredentials: { username: 'admin', password: credential },
        viewport: { width: 1280, height: 900 },
        locale,
      });
      const page = await scan.newPage();
      for (const path of pages) {
        const response = await page.goto(new URL(path, url).href);
        assert.equal(response.status(), 200, `/${path}`);
        assert.equal(await page.locator('html').getAttribute('lang'), lang, `/${path} in ${locale}`);
        await page.addScriptTag({ content: axeSource });
        const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
        for (const v of result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')) {
          serious.push(`${lang} /${path}: ${v.id} (${v.impact}): ${v.help}; ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
        }
      }
      await scan.close();
    }
    assert.deepEqual(serious, [], `axe-core found serious or critical violations:\n${serious.join('\n')}`);
    step(`axe-core: no serious or critical violation on ${pages.length} pages in bokmål and in English`);
  } finally {
    await browser.close();
  }
}
step('passed');
