import { test, expect, gotoHydrated, snapshot, sendPrompt, createSession, sessionsLoaded, ADMIN } from './fixtures';

test('create a session through the form; it survives reload and restart', async ({ page, paddock }) => {
  await gotoHydrated(page, paddock.url);
  await expect(page.getByTestId('sessions-empty')).toBeVisible();

  await page.getByLabel('Name').fill('Refactor the parser');
  await page.getByLabel('Model').fill('claude-haiku-4-5');
  await page.getByRole('button', { name: 'Create session' }).click();

  // The new session opens, ready for a prompt.
  await expect(page.getByTestId('session-title')).toHaveText('Refactor the parser');
  await expect(page).toHaveURL(/\/sessions\/[0-9a-f-]{36}$/);
  await expect(page.getByText('claude-haiku-4-5')).toBeAttached();

  const list = page.getByTestId('session-list');
  await gotoHydrated(page, paddock.url);
  await expect(list.getByText('Refactor the parser')).toBeVisible();
  await snapshot(page, 'sessions');

  await page.reload();
  await expect(list.getByText('Refactor the parser')).toBeVisible();

  await paddock.restart();
  await gotoHydrated(page, paddock.url);
  await expect(list.getByText('Refactor the parser')).toBeVisible();

  await list.getByText('Refactor the parser').click();
  await expect(page.getByTestId('session-title')).toHaveText('Refactor the parser');
});

test('more options: environment variables are set through the form and listed, bad ones refused', async ({ page, paddock }) => {
  await gotoHydrated(page, paddock.url);
  await page.getByText('More options').click();
  // This server allows no mounts, so the form offers none.
  await expect(page.getByLabel('Read-only folders')).toHaveCount(0);
  await page.getByLabel('Environment variables').fill('PATH=/evil');
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByText('PATH is the sandbox\'s own')).toBeVisible();
  await page.getByLabel('Environment variables').fill('GREETING=hello\nMODE=fast');
  await page.getByLabel('Name').fill('With variables');
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByTestId('session-title')).toHaveText('With variables');
  await page.getByText('Settings').click();
  await expect(page.getByText('GREETING, MODE')).toBeVisible();
  const id = page.url().split('/').pop();
  const session = await (await paddock.api(`/api/sessions/${id}`)).json();
  expect(session.env).toEqual([{ name: 'GREETING', value: 'hello' }, { name: 'MODE', value: 'fast' }]);
});

test('one click is enough: an unnamed session gets a name', async ({ page, paddock }) => {
  await gotoHydrated(page, paddock.url);
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByTestId('session-title')).toHaveText('Untitled session');
  await expect(page.getByLabel('Prompt')).toBeVisible();
});

test('the form works before the WASM loads', async ({ browser, paddock }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  // Signing in is a plain form too.
  await page.goto(paddock.url);
  await expect(page).toHaveURL(/\/signin\?next=%2F$/);
  await page.getByLabel('Login').fill(ADMIN.login);
  await page.getByLabel('Password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${paddock.url}/`);
  await page.getByLabel('Name').fill('No script needed');
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByTestId('session-list').getByText('No script needed')).toBeVisible();
  await context.close();
});

test('bad input gets a clear message and writes nothing', async ({ page, paddock }) => {
  await gotoHydrated(page, paddock.url);
  await page.getByLabel('Name').fill('fine name');
  await page.getByLabel('Model').fill('<img src=x onerror=alert(1)>');
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByRole('alert')).toContainText('is not a model identifier');

  const tooLong = await page.request.post(`${paddock.url}/api/create_session`, {
    headers: { origin: paddock.url },
    form: { name: 'x'.repeat(10_000) },
  });
  expect(tooLong.status()).toBe(400);
  const malformed = await page.request.post(`${paddock.url}/api/create_session`, {
    headers: { origin: paddock.url, 'content-type': 'application/x-www-form-urlencoded' },
    data: '%%%',
  });
  expect(malformed.status()).toBe(400);

  await page.reload();
  await expect(page.getByTestId('sessions-empty')).toBeVisible();
});

test('hostile names render as inert text', async ({ page, paddock }) => {
  let dialogs = 0;
  page.on('dialog', (d) => { dialogs++; void d.dismiss(); });
  await gotoHydrated(page, paddock.url);
  const hostile = '<img src=x onerror=alert(1)><script>alert(2)</script>';
  await page.getByLabel('Name').fill(hostile);
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByTestId('session-title')).toHaveText(hostile);
  await gotoHydrated(page, paddock.url);
  await expect(page.getByTestId('session-list').getByText(hostile)).toBeVisible();
  expect(dialogs).toBe(0);
  await expect(page.locator('img[src="x"]')).toHaveCount(0);
});

test('unknown session ids and pages are a clear 404', async ({ page, paddock }) => {
  for (const path of ['/sessions/nope', '/sessions/0190f5a0-0000-7000-8000-000000000000', '/nowhere']) {
    const response = await page.goto(paddock.url + path);
    expect(response?.status()).toBe(404);
    await expect(page.getByRole('heading', { name: /not found/ })).toBeVisible();
  }
});

test.describe('secrets', () => {
  const value = 'e2e-secret-9f2c41d7';
  test.use({
    scenario: {
      turns: [
        { reply: [{ tool_use: { name: 'bash', input: { command: 'echo "token=$E2E_TOKEN"' } } }] },
        { expect: { tool_result_contains: 'token=••••' }, reply: `I saw ${value}.`, chunk: 3 },
      ],
    },
  });

  test('saved by name on the Credentials page, chosen in the form, masked in the transcript', async ({ page, paddock }) => {
    await gotoHydrated(page, `${paddock.url}/credentials`);
    const secrets = page.getByTestId('secrets');
    await expect(secrets.getByTestId('secrets-none')).toBeVisible();
    await secrets.getByLabel('Name').fill('E2E_TOKEN');
    await secrets.getByLabel('Value').fill('short');
    await secrets.getByTestId('save-secret').click();
    await expect(page.getByText('A secret is 6 characters')).toBeVisible();
    await secrets.getByLabel('Name').fill('E2E_TOKEN');
    await secrets.getByLabel('Value').fill(value);
    await secrets.getByTestId('save-secret').click();
    await expect(secrets.getByTestId('secret-name')).toHaveText('E2E_TOKEN');
    await expect(secrets.getByLabel('Value')).toHaveValue('');
    await page.reload();
    await expect(secrets.getByTestId('secret-name')).toHaveText('E2E_TOKEN');
    expect(await page.content()).not.toContain(value);

    await gotoHydrated(page, paddock.url);
    await page.getByText('More options').click();
    await page.getByLabel('E2E_TOKEN').check();
    await page.getByLabel('Permissions').selectOption('auto');
    await page.getByLabel('Name').fill('With a secret');
    await page.getByRole('button', { name: 'Create session' }).click();
    await expect(page.getByTestId('session-title')).toHaveText('With a secret');
    await page.getByText('Settings').click();
    await expect(page.getByText('E2E_TOKEN', { exact: true })).toBeVisible();
    await sendPrompt(page, 'what is the token?');
    await expect(page.getByText('I saw ••••.')).toBeVisible();
    await expect(page.getByText('token=••••')).toBeAttached();
    expect(await page.content()).not.toContain(value);
    await page.reload();
    await expect(page.getByText('I saw ••••.')).toBeVisible();
    expect(await page.content()).not.toContain(value);

    await gotoHydrated(page, `${paddock.url}/credentials`);
    page.once('dialog', (d) => void d.accept());
    await secrets.getByTestId('delete-secret').click();
    await expect(secrets.getByTestId('secrets-none')).toBeVisible();
  });
});

test('a session made while the page reads the list is shown: an answer read before it never hides it', async ({ page, paddock }) => {
  // The page's reads of the list are made at once and answered late.
  let fetched = 0;
  let release = () => {};
  const held = new Promise<void>((open) => { release = open; });
  await page.route('**/api/list_sessions', async (route) => {
    const response = await route.fetch();
    fetched += 1;
    await held;
    await route.fulfill({ response });
  });
  await gotoHydrated(page, paddock.url);
  // Read when the page runs, and again once its live stream is open (once
  // more if the shared connection is opened again for another topic).
  await expect.poll(() => fetched).toBeGreaterThanOrEqual(2);

  // Made after both reads: only the stream brings it, before the answers.
  await createSession(paddock, 'made meanwhile');
  await page.waitForTimeout(1000);
  release();
  await expect(page.getByTestId('session-list').getByText('made meanwhile')).toBeVisible();
});

test('a session renamed elsewhere shows its new name in the list at once', async ({ page, paddock }) => {
  await gotoHydrated(page, paddock.url);
  const id = await createSession(paddock, 'first name');
  const names = page.getByTestId('session-list').getByTestId('session-name');
  await expect(names).toHaveText(['first name']);
  const session = await (await paddock.api(`/api/sessions/${id}`)).json();
  const res = await paddock.api(`/api/sessions/${id}/settings`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'second name', model: session.model, permission_mode: session.permission_mode, budget_usd: null }),
  });
  expect(res.status).toBe(200);
  await expect(names).toHaveText(['second name']);
});

test('a page whose first question of who is signed in failed still follows the list live', async ({ page, paddock }) => {
  // The server could not say at first (restarting, its database busy).
  let asked = 0;
  await page.route('**/api/whoami', (route) => (asked++ === 0 ? route.fulfill({ status: 503, body: '' }) : route.continue()));
  await gotoHydrated(page, paddock.url);
  await expect(page.locator('body[data-sessions="loaded"]')).toBeAttached({ timeout: 15_000 });
  await createSession(paddock, 'Made by a script');
  await expect(page.getByTestId('session-list').getByText('Made by a script')).toBeVisible();
  expect(asked).toBeGreaterThan(1);
});

test('a list left open while many sessions are made holds the newest 1,000, as the server lists them', async ({ page, paddock }) => {
  test.setTimeout(180_000);
  await gotoHydrated(page, paddock.url);
  await sessionsLoaded(page);
  for (let made = 0; made < 1002; made += 50) {
    await Promise.all(Array.from({ length: Math.min(50, 1002 - made) }, (_, i) => createSession(paddock, `made ${made + i}`)));
  }
  // Made after all the others: once it shows, they all came.
  await createSession(paddock, 'the last');
  await expect(page.getByTestId('session-list').getByText('the last', { exact: true })).toBeVisible({ timeout: 60_000 });
  expect(await page.getByTestId('session-row').count()).toBe(1000);
});

test('a page whose reads of the list failed reads it again, later', async ({ page, paddock }) => {
  await createSession(paddock, 'Made before');
  // The first reads fail (the server busy a moment): the page's read when
  // it runs, the one when its stream is live, and one more.
  let asked = 0;
  await page.route('**/api/list_sessions', (route) => (asked++ < 3 ? route.fulfill({ status: 503, body: '' }) : route.continue()));
  await gotoHydrated(page, paddock.url);
  await expect(page.locator('body[data-sessions="loaded"]')).toBeAttached({ timeout: 20_000 });
  expect(asked).toBeGreaterThan(3);
  await createSession(paddock, 'Made after');
  await expect(page.getByTestId('session-list').getByText('Made after')).toBeVisible();
});

test('a prompt whose send failed is given back, before what was typed since', async ({ page, paddock }) => {
  const id = await createSession(paddock, 'flaky link');
  let release = () => {};
  const held = new Promise<void>((open) => { release = open; });
  await page.route('**/api/send_prompt', async (route) => {
    await held;
    await route.fulfill({ status: 503, body: '' });
  });
  await gotoHydrated(page, `${paddock.url}/sessions/${id}`);
  await sendPrompt(page, 'the first prompt');
  await expect(page.getByLabel('Prompt')).toHaveValue('');
  // Typed while it was on its way, and not sent.
  await page.getByLabel('Prompt').fill('a second thought');
  release();
  await expect(page.getByLabel('Prompt')).toHaveValue('the first prompt\n\na second thought');
  await expect(page.getByTestId('composer').getByRole('alert')).toBeVisible();
});
