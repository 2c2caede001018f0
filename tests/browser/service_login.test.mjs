// Login-gated service URLs (access="workspace") in headless Debian chromium,
// driven by playwright-core; run by tests/e2e/test_service_access.py, which
// makes the grant on a sandbox serving a hostile page on SERVICE_PORT (it
// tries to read the console key from its own sessionStorage and its opener,
// and reports what it got, with the cookies it can see, in #loot).
//
//   LOGIN_URL    the grant's browser_url ({id}--{port}.localhost)
//   SANDPIT_KEY  an API key of the tenant that owns the sandbox
//   OTHER_KEY    an API key of another tenant
//
// A fresh browser opening the URL lands on the console's sign-in page, not
// the app; another tenant's key is refused there; the owner's key brings the
// browser back to the page it asked for, which cannot read the key and does
// not see the session cookie.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const LOGIN_URL = env('LOGIN_URL');
const KEY = env('SANDPIT_KEY');
const OTHER_KEY = env('OTHER_KEY');
const TIMEOUT = 30_000;

function step(text) {
  console.log(`-- ${text}`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const service = new URL(LOGIN_URL);

    step('no session: the sign-in page, not the app');
    await page.goto(new URL('/deep?x=1', service).href);
    assert.equal(new URL(page.url()).pathname, '/service-sign-in');
    assert.notEqual(new URL(page.url()).host, service.host);
    assert.equal(await page.locator('#loot').count(), 0);

    step("another tenant's key is refused");
    await page.getByLabel('API key').fill(OTHER_KEY);
    await page.getByRole('button', { name: 'Sign in and continue' }).click();
    await page.locator('#error').filter({ hasText: '404' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/service-sign-in');

    step("the owner's key: back to the page asked for, on the service host");
    await page.getByLabel('API key').fill(KEY);
    await page.getByRole('button', { name: 'Sign in and continue' }).click();
    await page.waitForURL((u) => u.host === service.host && u.pathname === '/deep');
    assert.equal(new URL(page.url()).search, '?x=1');
    await page.waitForFunction(() => document.querySelector('#loot')?.textContent !== 'running');
    const report = JSON.parse(await page.locator('#loot').innerText());
    console.log(`   page saw ${JSON.stringify(report)}`);
    assert.equal(report.own, null, 'the service page read a key from its storage');
    assert.equal(report.opener, 'none', 'the service page has an opener');
    assert.ok(!report.cookie.includes('sandpit_svc_token'), 'the page sees the session cookie');
    assert.ok(!JSON.stringify(report).includes(KEY));

    step('the session holds for the next page load');
    await page.goto(new URL('/again', service).href);
    assert.equal(new URL(page.url()).host, service.host);
    await page.locator('#loot').waitFor();
    await context.close();
  } finally {
    await browser.close();
  }
  console.log('ok');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
