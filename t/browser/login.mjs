// A person in a real browser: Debian's Chromium, driven by puppeteer-core,
// opens a protected page, logs in through the provider's own pages, calls
// the API with the session, signs out, and once presses Cancel at the
// provider. Prints what that person saw as JSON (t/040-browser.t checks it).
//
//   node t/browser/login.mjs BASE_URL
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const [base] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'oauth2-chromium-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: profile,
  // the flags Debian's Chromium needs as root in a sandbox with no network
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const out = { console: [], cookieIssues: [] };
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  page.on('console', (m) => out.console.push(`${m.type()}: ${m.text()}`));
  const cdp = await page.createCDPSession();
  await cdp.send('Audits.enable');
  cdp.on('Audits.issueAdded', (e) => {
    if (e.issue.code === 'CookieIssue') out.cookieIssues.push(JSON.stringify(e.issue.details));
  });
  const text = () => page.$eval('body', (b) => b.innerText);
  const mine = async () => (await page.cookies(base)).filter((c) => c.name.startsWith('oauth2_'))
    .map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure }));
  const go = async (action) => (await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), action]))[0];

  // 1. a protected page: the provider's login page
  await page.goto(`${base}/app/`, { waitUntil: 'load' });
  out.loginPage = page.url();
  out.stateCookies = (await mine()).filter((c) => c.name.includes('_st_')).length;
  await page.type('input[name=login]', 'alice');
  await page.type('input[name=password]', 'pw');
  await go(page.click('button[type=submit]'));
  // the consent page, then back through the callback to the page
  if (await page.$('button[type=submit]')) await go(page.click('button[type=submit]'));
  out.afterLogin = { url: page.url(), text: await text(), cookies: await mine() };

  // 2. the API with the browser's session
  out.api = await page.evaluate(async () => {
    const r = await fetch('/api/whoami');
    return { status: r.status, sub: r.headers.get('X-Sub') };
  });

  // 3. sign out: the provider asks, then the public "signed out" page
  await page.goto(`${base}/oauth2/sign_out`, { waitUntil: 'load' });
  out.logoutPage = page.url();
  await go(page.click('button[name=logout]'));
  out.afterSignOut = { url: page.url(), text: await text(), cookies: await mine() };

  // 4. a new login, cancelled at the provider
  await page.goto(`${base}/app/`, { waitUntil: 'load' });
  const cancel = await go(page.click('a[href*="abort"]'));
  out.afterCancel = {
    url: page.url(),
    status: cancel ? cancel.status() : 0,
    text: await text(),
    link: await page.$eval('a', (a) => a.getAttribute('href')).catch(() => null),
    cookies: await mine(),
  };
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
