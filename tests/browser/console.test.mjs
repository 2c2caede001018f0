// Browser test of the web console: headless Debian chromium driven by
// playwright-core against a running `sandpit serve`. Run by
// tests/e2e/test_console.py, which starts the server and the sandboxes:
//
//   SANDPIT_URL      the server, e.g. http://127.0.0.1:PORT
//   SANDPIT_KEY      an API key of the tenant that owns the sandboxes
//   SANDBOX          a ready sandbox serving MARKER over HTTP on SERVICE_PORT
//   OTHER_SANDBOX    a second sandbox, stopped (for the filters)
//   MARKER, SERVICE_PORT
//   SCREENSHOTS      optional: a directory to write the README screenshots to
//
// Each step prints a line; any failure exits non-zero with the reason.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const URL_ = env('SANDPIT_URL');
const KEY = env('SANDPIT_KEY');
const SANDBOX = env('SANDBOX');
const OTHER = env('OTHER_SANDBOX');
const MARKER = env('MARKER');
const PORT = env('SERVICE_PORT');
const SHOTS = process.env.SCREENSHOTS;
const TIMEOUT = 30_000;

function step(text) {
  console.log(`-- ${text}`);
}

async function shot(page, name, fullPage = false) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

/** Rows of the sandboxes table, by name. */
async function listedNames(page) {
  return page.locator('table.list tbody tr[data-name]').evaluateAll((rows) => rows.map((r) => r.dataset.name));
}

/** Wait until `predicate(listedNames)` holds (the list polls the API). */
async function expectListed(page, predicate, what) {
  const deadline = Date.now() + TIMEOUT;
  let listed = [];
  while (Date.now() < deadline) {
    listed = await listedNames(page);
    if (predicate(listed)) return;
    await page.waitForTimeout(200);
  }
  throw new Error(`${what}: listed ${JSON.stringify(listed)}`);
}

async function signIn(page) {
  step('sign in: a wrong key shows the API error, the right one the list');
  await page.goto(URL_);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('API key').fill('sp_wrong');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: '401' }).waitFor();
  assert.match(await page.getByRole('alert').innerText(), /401 Unauthorized: Invalid API key/);
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
}

async function listAndFilter(page) {
  step('list shows both sandboxes, live');
  await expectListed(page, (l) => l.includes(SANDBOX) && l.includes(OTHER), 'both sandboxes');
  const row = page.locator(`tr[data-name="${SANDBOX}"]`);
  assert.match(await row.innerText(), /ready/);
  assert.match(await row.innerText(), /vCPU/);
  assert.match(await row.innerText(), /stops in .* if idle/);
  assert.match(await page.locator(`tr[data-name="${OTHER}"]`).innerText(), /stopped/);
  step('list: updates arrive as server-sent events, not by polling');
  await page.waitForFunction(() => document.documentElement.dataset.live === 'events', null, { timeout: TIMEOUT });
  await shot(page, 'sandboxes');

  step('filter by name');
  await page.getByLabel('Name contains').fill(SANDBOX);
  await expectListed(page, (l) => l.includes(SANDBOX) && !l.includes(OTHER), 'name filter');
  step('filter by status');
  await page.getByLabel('Name contains').fill('');
  await page.getByLabel('Status').selectOption('stopped');
  await expectListed(page, (l) => l.includes(OTHER) && !l.includes(SANDBOX), 'status stopped');
  await page.getByLabel('Status').selectOption('ready');
  await expectListed(page, (l) => l.includes(SANDBOX) && !l.includes(OTHER), 'status ready');
  await page.getByLabel('Status').selectOption('failed');
  await page.locator('td.empty').waitFor({ timeout: TIMEOUT });
  await page.getByLabel('Status').selectOption('');
  step('sort by name, both directions');
  await page.getByLabel('Sort by').selectOption('name');
  await page.getByLabel('Order').selectOption('asc');
  const ascending = [SANDBOX, OTHER].sort();
  const order = (l) => [l.indexOf(ascending[0]), l.indexOf(ascending[1])];
  await expectListed(page, (l) => { const [i, j] = order(l); return i >= 0 && j > i; }, 'ascending');
  await page.getByLabel('Order').selectOption('desc');
  await expectListed(page, (l) => { const [i, j] = order(l); return j >= 0 && i > j; }, 'descending');
}

async function openService(context, page) {
  step('open the sandbox');
  await page.getByRole('link', { name: SANDBOX, exact: true }).click();
  await page.getByRole('heading', { name: SANDBOX, exact: true }).waitFor();
  await page.locator('dl.fields').getByText('ready').waitFor();

  step('Open service: the page served in the sandbox opens in a new tab');
  await page.getByLabel('Port').fill(PORT);
  const [tab] = await Promise.all([
    context.waitForEvent('page'),
    page.getByRole('button', { name: 'Open', exact: true }).click(),
  ]);
  await tab.getByText(MARKER).waitFor({ timeout: TIMEOUT });
  assert.match(new URL(tab.url()).hostname, new RegExp(`--${PORT}\\.localhost$`));
  assert.ok(!tab.url().includes('token='), `the token left the URL: ${tab.url()}`);
  await tab.close();

  step('Share Link with a 1 hour lifetime opens in a fresh context with no key');
  await page.getByLabel('Share link lifetime').selectOption('3600');
  await page.getByRole('button', { name: 'Share Link', exact: true }).click();
  await page.getByText(/Link copied; it works until/).waitFor();
  const link = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(link, await page.getByLabel('Share link', { exact: true }).inputValue());
  assert.match(link, /\/_svc\/auth\?token=/);
  const token = JSON.parse(Buffer.from(new URL(link).searchParams.get('token').split('.')[1], 'base64url'));
  const life = token.exp - token.iat;
  assert.ok(life >= 3590 && life <= 3600, `token lifetime ${life}`);
  const stranger = await context.browser().newContext();
  const guest = await stranger.newPage();
  await guest.goto(link);
  await guest.getByText(MARKER).waitFor({ timeout: TIMEOUT });
  assert.equal(await guest.evaluate(() => sessionStorage.length), 0);
  await stranger.close();

  step('Open service shows API errors as returned');
  await page.getByLabel('Port').fill('0');
  await page.getByRole('button', { name: 'Share Link', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: '422 ValidationError: port must be between 1 and 65535, got 0' }).waitFor();
  await page.getByLabel('Port').fill(PORT);
  await page.getByRole('button', { name: 'Share Link', exact: true }).click();
  await page.getByRole('alert').waitFor({ state: 'hidden' });
}

/** Text of the terminal's screen. */
function screenText(page) {
  return page.locator('.terminal .xterm-rows').innerText();
}

async function typeAndWait(page, command, pattern) {
  await page.locator('.terminal .xterm-helper-textarea').focus();
  await page.keyboard.type(command);
  await page.keyboard.press('Enter');
  await page.waitForFunction(
    ([source]) => new RegExp(source).test(document.querySelector('.terminal .xterm-rows').innerText),
    [pattern.source],
    { timeout: TIMEOUT },
  ).catch(async (e) => {
    throw new Error(`terminal never showed ${pattern}:\n${await screenText(page)}\n${e.message}`);
  });
  const match = (await screenText(page)).match(pattern);
  return match;
}

async function terminal(page) {
  step('terminal: run a command and see its output');
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await page.getByText('Terminal connected.').waitFor();
  await typeAndWait(page, 'echo "sum=$((6*7))"', /sum=42/);
  await typeAndWait(page, 'tty', /\/dev\/pts\/\d+/);

  step('terminal: resize follows the page');
  const before = await typeAndWait(page, 'echo "size-a=$(stty size)"', /size-a=(\d+) (\d+)/);
  await page.setViewportSize({ width: 900, height: 700 });
  const after = await typeAndWait(page, 'echo "size-b=$(stty size)"', /size-b=(\d+) (\d+)/);
  assert.notEqual(after[2], before[2], `columns stayed ${before[2]}`);
  await page.setViewportSize({ width: 1280, height: 900 });

  step('usage charts draw CPU and memory');
  // Some work for the charts: 12 s of CPU and 48 MiB held for 18 s.
  await typeAndWait(page,
    'python3 -c "import time; b = bytearray(48 << 20); t = time.time(); exec(\'while time.time() - t < 12: pass\'); time.sleep(6)" & echo "load-$((6*7))"',
    /load-42/);
  await typeAndWait(page, 'clear; echo "hello from $(hostname)"; ls /', /hello from/);
  await page.waitForFunction(() => {
    const lines = document.querySelectorAll('.usage .chart-line');
    return lines.length === 2 && [...lines].every((l) => l.getAttribute('d').split('L').length >= 8);
  }, null, { timeout: 60_000 });
  // The busy loop shows: some CPU sample at 15% or more (y is 0 at the top
  // of the 80-high chart, 100% at y=2).
  await page.waitForFunction(() => {
    const d = document.querySelector('.usage .chart-line').getAttribute('d');
    const ys = [...d.matchAll(/,(-?[\d.]+)/g)].map((m) => Number(m[1]));
    return ys.some((y) => y <= 78 - 0.15 * 76);
  }, null, { timeout: 60_000 });
  assert.match(await page.locator('.usage figcaption').first().innerText(), /% of \d+ vCPU/);
  await shot(page, 'sandbox-detail', true);
}

async function stopStart(page) {
  step('stop with confirmation');
  const dialogs = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.accept();
  });
  await page.getByRole('button', { name: 'Stop', exact: true }).click();
  await page.locator('dl.fields .badge.stopped').waitFor({ timeout: TIMEOUT });
  assert.match(dialogs.at(-1), /^Stop sandbox/);
  await page.getByText(/shell exited with code|Terminal disconnected/).first().waitFor({ timeout: TIMEOUT });
  step('start');
  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await page.locator('dl.fields .badge.ready').waitFor({ timeout: 60_000 });

  step('retention edit through the update API');
  await page.getByLabel('Idle TTL (seconds)').fill('1234');
  await page.getByRole('button', { name: 'Save retention', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: '422 ValidationError: idle_ttl_seconds must be a multiple of 60' }).waitFor();
  await page.getByLabel('Idle TTL (seconds)').fill('1200');
  await page.getByRole('button', { name: 'Save retention', exact: true }).click();
  await page.getByText('Saved.').waitFor();
  const saved = await page.evaluate(async ([name]) => {
    const r = await fetch(`/api/v2/sandboxes/boxes/${name}`, { headers: { 'X-Api-Key': sessionStorage.getItem('sandpit.apiKey') } });
    return (await r.json()).idle_ttl_seconds;
  }, [SANDBOX]);
  assert.equal(saved, 1200);
}

async function templates(page) {
  step('templates: create, list, delete');
  await page.getByRole('link', { name: 'Templates' }).click();
  await page.getByRole('heading', { name: 'Templates' }).waitFor();
  await page.getByText('New template').click();
  await page.getByLabel('Name', { exact: true }).fill('console-tpl');
  await page.getByLabel('Image').fill('host');
  await page.getByLabel('CPU').fill('500m');
  await page.getByLabel('Memory').fill('512Mi');
  await page.getByRole('button', { name: 'Create template', exact: true }).click();
  await page.locator('tr[data-name="console-tpl"]').waitFor();
  step('templates: a bad value shows the API error');
  await page.getByLabel('Name', { exact: true }).fill('console-bad');
  await page.getByLabel('Image').fill('host');
  await page.getByLabel('CPU').fill('lots');
  await page.getByRole('button', { name: 'Create template', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: '422' }).waitFor();
  await page.getByLabel('CPU').fill('');
  await shot(page, 'templates');
  await page.getByRole('button', { name: 'Delete template console-tpl', exact: true }).click();
  await page.locator('tr[data-name="console-tpl"]').waitFor({ state: 'detached' });
}

async function phone(browser) {
  step('phone width: no horizontal scrolling, navigation reachable');
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const page = await context.newPage();
  await page.goto(URL_);
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
  await page.locator(`tr[data-name="${SANDBOX}"]`).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `page is ${overflow}px wider than the phone`);
  await shot(page, 'phone');
  await page.getByRole('link', { name: 'Pools' }).click();
  await page.getByRole('heading', { name: 'Pools' }).waitFor();
  await context.close();
}

/** The page to screenshot (to /tmp) when a step fails. */
let failurePage = null;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const requests = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL_ });
    context.setDefaultTimeout(TIMEOUT);
    const page = await context.newPage();
    failurePage = page;
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
    await signIn(page);
    await listAndFilter(page);
    await openService(context, page);
    await terminal(page);
    await stopStart(page);
    await templates(page);
    step('the key never appeared in a URL');
    assert.ok(requests.length > 10);
    assert.ok(!requests.some((u) => u.includes(KEY)), 'a request URL carried the API key');
    await context.close();
    await phone(browser);
  } catch (e) {
    if (failurePage) await failurePage.screenshot({ path: '/tmp/sandpit-console-failure.png' }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  console.log('ok');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
