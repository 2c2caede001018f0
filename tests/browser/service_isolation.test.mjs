// Issue 14 H1: a page served by a sandbox must not get the console's API
// key. Headless Debian chromium driven by playwright-core against a running
// `sandpit serve`; run by tests/e2e/test_console.py, which starts a sandbox
// serving a hostile page on SERVICE_PORT. The page tries to read the key
// from its own sessionStorage and from window.opener's, and writes what it
// got into #loot.
//
//   SANDPIT_URL   the server on loopback, e.g. http://127.0.0.1:PORT
//   SANDPIT_KEY   an API key of the tenant that owns SANDBOX
//   SANDBOX, SANDBOX_ID, SERVICE_PORT
//
// The console is also opened as http://console.sandpit.test:PORT, a name
// that is not loopback (chromium maps it to 127.0.0.1, so no traffic leaves
// the machine): the documented remote setup without --service-domain.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const URL_ = env('SANDPIT_URL');
const KEY = env('SANDPIT_KEY');
const SANDBOX = env('SANDBOX');
const ID = env('SANDBOX_ID');
const PORT = env('SERVICE_PORT');
const TIMEOUT = 30_000;
const NAME = 'console.sandpit.test';
const REMOTE = (() => {
  const u = new URL(URL_);
  u.hostname = NAME;
  return u.origin;
})();

function step(text) {
  console.log(`-- ${text}`);
}

/** What the hostile page reported, or null if it never ran. */
async function loot(page) {
  const el = page.locator('#loot');
  if ((await el.count()) === 0) return null;
  await page.waitForFunction(() => document.querySelector('#loot').textContent !== 'running');
  return el.innerText();
}

function assertNoKey(report, where) {
  assert.ok(report === null || !report.includes(KEY), `${where}: the sandbox page read the API key: ${report}`);
}

async function signInAndOpenSandbox(page, origin) {
  await page.goto(origin);
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('link', { name: SANDBOX, exact: true }).click();
  await page.getByRole('heading', { name: SANDBOX, exact: true }).waitFor();
  await page.getByLabel('Port').fill(PORT);
}

async function serviceToken() {
  const r = await fetch(`${URL_}/api/v2/sandboxes/boxes/${SANDBOX}/service-url`, {
    method: 'POST',
    headers: { 'X-Api-Key': KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ port: Number(PORT) }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text).token;
}

async function remoteConsole(browser) {
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT);
  const opened = [];
  context.on('page', (p) => opened.push(p));
  const page = await context.newPage();
  await signInAndOpenSandbox(page, REMOTE);

  step('remote console without --service-domain: Open refuses and says why; no tab reads the key');
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  const alert = page.getByRole('alert').filter({ hasText: '409 Conflict' });
  await alert.waitFor().catch(() => {});
  await page.waitForTimeout(1500);
  for (const tab of opened.filter((p) => p !== page)) {
    await tab.waitForLoadState().catch(() => {});
    assertNoKey(await loot(tab), `tab ${tab.url()}`);
  }
  assert.match(await alert.innerText(), /--service-domain/);
  assert.equal(opened.length, 1, `a tab opened: ${opened.map((p) => p.url())}`);

  step('remote console: Share Link refuses the same way');
  await page.getByRole('button', { name: 'Share Link', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: '--service-domain' }).waitFor();

  const token = await serviceToken();
  step('the path form has no browser login: the old browser_url does not render the page');
  const login = await page.goto(`${REMOTE}/svc/${ID}--${PORT}/_svc/auth?token=${token}`);
  assertNoKey(await loot(page), 'path-form login');
  assert.equal(login.status(), 401, `path-form login answered ${login.status()}`);

  step('a path-form page rendered anyway (token header) runs in an opaque origin');
  // The console's key is in this tab's sessionStorage for the server's origin.
  await page.goto(REMOTE);
  await page.getByRole('heading', { name: 'Sandboxes' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sandpit.apiKey')), KEY);
  await page.setExtraHTTPHeaders({ 'X-Langsmith-Sandbox-Service-Token': token });
  await page.goto(`${REMOTE}/svc/${ID}--${PORT}/`);
  const report = await loot(page);
  assert.ok(report !== null, 'the page did not render');
  assertNoKey(report, 'path form');
  assert.match(report, /"own":"blocked/);
  await context.close();
}

async function loopbackConsole(browser) {
  step('loopback console: Open loads the service on its own origin, without an opener');
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  await signInAndOpenSandbox(page, URL_);
  const [tab] = await Promise.all([
    context.waitForEvent('page'),
    page.getByRole('button', { name: 'Open', exact: true }).click(),
  ]);
  await tab.locator('#loot').waitFor();
  const report = await loot(tab);
  assertNoKey(report, 'service tab');
  assert.match(new URL(tab.url()).hostname, new RegExp(`--${PORT}\\.localhost$`));
  const seen = JSON.parse(report);
  assert.equal(seen.opener, 'none', `the service tab has an opener: ${report}`);
  assert.equal(seen.own, null);
  await context.close();
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      `--host-resolver-rules=MAP ${NAME} 127.0.0.1`],
  });
  try {
    await remoteConsole(browser);
    await loopbackConsole(browser);
  } finally {
    await browser.close();
  }
  console.log('ok');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
