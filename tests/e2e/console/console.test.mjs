// The console in a real browser: Debian's Chromium driven by Playwright (playwright-core),
// with axe-core's accessibility checks on every page. Run by tests/console_browser.rs, one
// phase at a time, so the Rust test can check the proxy and the store between them:
//
//   node console.test.mjs connect   a user signs in with a session link, connects through the
//                                   provider's consent in a popup, tests the connection
//   node console.test.mjs admin     an admin signs in, sees the connectors (copies the
//                                   redirect URI), finds the user's connection and revokes it
//   node console.test.mjs revoked   the user's page shows the connection revoked
//
// Environment: CONSOLE (the console's origin), LINK (a sign-in link), AUTH_PORT (the
// provider's port; auth.test resolves to 127.0.0.1 and nothing else is reachable), STATE (a
// file for the user's session between phases), SHOTS (a folder for screenshots).
// Prints one JSON line per page checked; exits 1 on the first failure.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const phase = process.argv[2];
const { CONSOLE, LINK, AUTH_PORT, STATE, SHOTS } = process.env;

function fail(message) {
  console.error(`FAIL [${phase}]: ${message}`);
  process.exit(1);
}

function expect(condition, message) {
  if (!condition) fail(message);
}

/** axe-core on the page: no serious or critical violation. */
async function accessible(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP (no inline or eval'd
  // script) does not govern; the page itself runs only /console/static/console.js.
  await page.evaluate(axeSource);
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const serious = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  console.log(JSON.stringify({ page: name, url: page.url(), violations: serious.map((v) => v.id) }));
  expect(serious.length === 0, `${name}: ${serious.map((v) => `${v.id} (${v.nodes.length})`).join(', ')}`);
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page, link) {
  await page.goto(link);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(/\/console\/(me|connectors)/);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Only loopback: the provider's name maps to it, every other name fails.
    `--host-resolver-rules=MAP auth.test 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`,
  ],
});

try {
  if (phase === 'connect') {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();
    await signIn(page, LINK);
    await accessible(page, 'my-connections-empty');
    await shot(page, 'my-connections-before');
    const card = page.getByRole('region', { name: 'e2e' });
    expect(await card.getByText('not connected').count() === 1, 'the connector starts not connected');

    // Connect: the provider's consent in a popup; the page updates when the popup reports back.
    const [popup] = await Promise.all([page.waitForEvent('popup'), card.getByRole('link', { name: 'Connect' }).click()]);
    await popup.getByRole('button', { name: 'Continue' }).click();
    await popup.waitForURL(new RegExp(`auth\\.test:${AUTH_PORT}/`)).catch(async (e) => {
      fail(`the popup did not reach the provider: ${popup.url()}\n${(await popup.content()).slice(0, 2000)}\n${e}`);
    });
    await popup.locator('input[name=login]').fill('alice');
    await popup.locator('input[name=password]').fill('any-password');
    await popup.locator('button[type=submit]').click();
    await popup.locator('button[type=submit]').click(); // consent
    await popup.waitForURL(/\/oauth\/callback/);
    expect((await popup.content()).includes('Connected to'), 'the popup says connected');
    await page.waitForFunction(() => document.body.innerText.includes('Disconnect'), null, { timeout: 15000 });
    expect(await card.getByText('connected', { exact: true }).count() === 1, 'the card shows connected');
    await accessible(page, 'my-connections');

    // Test: the connector's health check with the user's token.
    await card.getByRole('button', { name: 'Test' }).click();
    await page.waitForURL(/\/console\/me\/test/);
    expect((await page.locator('main').innerText()).includes('healthy'), 'the test says healthy');
    await accessible(page, 'test-result');
    await shot(page, 'test-result');
    await page.goto(`${CONSOLE}/console/me`);
    await shot(page, 'my-connections');
    await context.storageState({ path: STATE });
  } else if (phase === 'admin') {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: CONSOLE });
    const page = await context.newPage();
    await signIn(page, LINK);
    await page.waitForURL(/\/console\/connectors/);
    const redirect = (await page.locator('#redirect-uri').innerText()).trim();
    expect(redirect === `${CONSOLE}/oauth/callback`, `the redirect URI is shown: ${redirect}`);
    await page.getByRole('button', { name: 'Copy the redirect URI' }).click();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    expect(copied === redirect, `the redirect URI is copied: ${copied}`);
    await accessible(page, 'connectors');
    await shot(page, 'connectors');

    // A new connector from a discovery URL: Check fills the endpoints and says what it found.
    await page.getByRole('link', { name: 'New connector' }).click();
    await page.waitForURL(/\/console\/connectors\/new/);
    await page.locator('#template-filter').fill('git');
    expect(await page.locator('#templates li:not([hidden])').count() === 2, 'the gallery narrows to github and gitlab');
    await page.locator('#f-name').fill('wiki');
    await page.locator('#f-issuer').fill(`https://auth.test:${AUTH_PORT}`);
    await page.getByRole('button', { name: 'Check' }).click();
    await page.waitForFunction(() => document.querySelector('#f-token_endpoint').value.endsWith('/token'));
    expect((await page.locator('main').innerText()).includes('Found the authorization server'), 'Check says what it found');
    await accessible(page, 'new-connector-checked');
    await shot(page, 'new-connector');
    await page.locator('#f-client_id').fill('tollgate');
    await page.locator('#f-client_secret').fill('wiki-client-secret-5678');
    await page.locator('#f-allowed_domains').fill(`https://auth.test:${AUTH_PORT}/wiki/*`);
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(/\/console\/connectors$/);
    // Edit: the secret shows only its last four; left blank, it is kept.
    await page.getByRole('link', { name: 'wiki' }).click();
    await page.waitForURL(/\/console\/connectors\/edit/);
    const placeholder = await page.locator('#f-client_secret').getAttribute('placeholder');
    expect(placeholder.includes('•••• 5678') && !(await page.content()).includes('wiki-client-secret-5678'), `last4 only: ${placeholder}`);
    await page.locator('#f-description').fill('The team wiki');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(/\/console\/connectors$/);
    expect((await page.locator('main').innerText()).includes('The team wiki'), 'the edit is saved');

    await page.getByRole('link', { name: 'Connections' }).first().click();
    await page.waitForURL(/\/console\/connections/);
    const row = page.getByRole('row', { name: /alice/ });
    expect(await row.getByText('healthy', { exact: true }).count() === 1, 'alice is healthy');
    await accessible(page, 'connections');
    await shot(page, 'connections');
    await row.getByRole('button', { name: 'Revoke' }).click();
    await page.waitForURL(/\/console\/connections\?connector=e2e/);
    expect(await page.getByRole('row', { name: /alice/ }).locator('.badge.revoked').count() === 1, 'alice is revoked');

    await page.getByRole('link', { name: 'Explain' }).click();
    await page.locator('#e-url').fill(`https://auth.test:${AUTH_PORT}/me`);
    await page.getByRole('button', { name: 'Explain' }).click();
    expect((await page.locator('main').innerText()).includes('allow'), 'explain allows the connector URL');
    await accessible(page, 'explain');
    await shot(page, 'explain');

    await page.getByRole('link', { name: 'Audit' }).click();
    await page.waitForURL(/\/console\/audit/);
    const audit = await page.locator('main').innerText();
    expect(audit.includes('connection.revoke') && audit.includes('e2e/alice') && audit.includes('ops-ana'), 'the revoke is audited');
    await accessible(page, 'audit');
    await shot(page, 'audit');
  } else if (phase === 'revoked') {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, storageState: STATE });
    const page = await context.newPage();
    await page.goto(`${CONSOLE}/console/me`);
    const card = page.getByRole('region', { name: 'e2e' });
    expect(await card.getByText('revoked').count() >= 1, 'the user sees the connection revoked');
    expect(await card.getByRole('link', { name: 'Connect' }).count() === 1, 'and can connect again');
    await accessible(page, 'my-connections-revoked');
    await shot(page, 'my-connections-revoked');
  } else if (phase === 'oidc') {
    // Admins sign in with the organization's identity provider; the admin group decides.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`${CONSOLE}/console/login`);
    await accessible(page, 'sign-in');
    await shot(page, 'sign-in');
    await page.getByRole('link', { name: 'Sign in with your organization' }).click();
    await page.waitForURL(new RegExp(`auth\\.test:${AUTH_PORT}/`));
    await page.locator('input[name=login]').fill('admin-ana');
    await page.locator('input[name=password]').fill('any-password');
    await page.locator('button[type=submit]').click();
    await page.locator('button[type=submit]').click(); // consent
    await page.waitForURL(/\/console\/connectors/).catch(async (e) => {
      fail(`the sign-in did not come back: ${page.url()}\n${(await page.locator('body').innerText()).slice(0, 1500)}\n${e}`);
    });
    expect((await page.locator('header').innerText()).includes('admin-ana'), 'signed in as admin-ana');
    // Someone outside the admin group signs in as a user: their own connections only.
    const other = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    await other.goto(`${CONSOLE}/console/login`);
    await other.getByRole('link', { name: 'Sign in with your organization' }).click();
    await other.locator('input[name=login]').fill('bob');
    await other.locator('input[name=password]').fill('any-password');
    await other.locator('button[type=submit]').click();
    await other.locator('button[type=submit]').click();
    await other.waitForURL(/\/console\/me/);
    expect(await other.getByRole('link', { name: 'Connectors' }).count() === 0, 'no admin pages for bob');
    await accessible(other, 'my-connections-oidc');
  } else {
    fail(`unknown phase ${phase}`);
  }
  console.log(JSON.stringify({ phase, ok: true }));
} finally {
  await browser.close();
}
