// Accounts as people use them, in Debian's Chromium against the real server:
// the first admin through the setup link in the log, sign-in and sign-out,
// users, API tokens, a canary credential, and a session shared with someone
// who may only watch.
import { test, expect, gotoHydrated, openNewSession, sendPrompt, sessionsLoaded, signIn } from './fixtures';

test.describe('first start', () => {
  test.use({ withAdmin: false });

  test('the setup link in the log creates the first admin, once; sign-out and sign-in', async ({ page, paddock }) => {
    // Every page sends an anonymous visitor to sign in.
    await page.goto(paddock.url);
    await expect(page).toHaveURL(/\/signin\?next=%2F$/);

    const link = paddock.log.match(/Open (http:\/\/\S+\/setup\?token=\S+)/)?.[1];
    expect(link, paddock.log).toBeTruthy();
    await gotoHydrated(page, link!);
    await page.getByLabel('Login').fill('ada');
    await page.getByLabel('Display name').fill('Ada Lovelace');
    await page.getByLabel('Password', { exact: true }).fill('analytical engine');
    await page.getByLabel('Password again').fill('analytical engine');
    await page.getByRole('button', { name: 'Create admin and sign in' }).click();
    await expect(page).toHaveURL(`${paddock.url}/`);
    await expect(page.getByTestId('account-name')).toContainText('Ada Lovelace');

    // The link worked once.
    await gotoHydrated(page, link!);
    await expect(page.getByTestId('setup-closed')).toBeVisible();
    await expect(page.getByTestId('setup-form')).toHaveCount(0);

    await page.getByTestId('account-name').click();
    await page.getByTestId('signout').click();
    await expect(page).toHaveURL(/\/signin/);
    await gotoHydrated(page, `${paddock.url}/`);
    await expect(page).toHaveURL(/\/signin\?next=%2F$/);

    await page.getByLabel('Login').fill('ada');
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toContainText('Wrong login or password');
    await page.getByLabel('Login').fill('ada');
    await page.getByLabel('Password').fill('analytical engine');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page).toHaveURL(`${paddock.url}/`);
    await expect(page.getByTestId('account-name')).toContainText('Ada Lovelace');
  });
});

test('signing out in one tab takes the others, which share its live connection, to the sign-in', async ({ page, paddock }) => {
  await gotoHydrated(page, `${paddock.url}/`);
  await sessionsLoaded(page);
  const other = await page.context().newPage();
  await gotoHydrated(other, `${paddock.url}/`);
  await other.getByTestId('account-name').click();
  await other.getByTestId('signout').click();
  await expect(other).toHaveURL(/\/signin/);
  // Its live connection ended, the first tab asks whether it is still
  // signed in, and loads again to the sign-in.
  await expect(page).toHaveURL(/\/signin/);
});

test('a token is shown once, works for scripts and stops at once when revoked', async ({ page, paddock }) => {
  await gotoHydrated(page, `${paddock.url}/tokens`);
  await page.getByLabel('Name').fill('deploy script');
  await page.getByRole('button', { name: 'Create token' }).click();
  const secret = (await page.getByTestId('new-token').innerText()).trim();
  expect(secret).toMatch(/^pdk_[0-9a-f]{64}$/);
  const row = page.getByTestId('token-row').filter({ hasText: 'deploy script' });
  await expect(row).toBeVisible();

  const asScript = () => fetch(`${paddock.url}/api/sessions`, { headers: { authorization: `Bearer ${secret}` } });
  expect((await asScript()).status).toBe(200);
  await page.reload();
  await expect(page.getByTestId('new-token')).toHaveCount(0);
  expect(await page.content()).not.toContain(secret);

  // The revoke button works once the page is hydrated (a click before
  // that lands on the server-rendered button and does nothing).
  await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
  page.once('dialog', (d) => void d.accept());
  await row.getByTestId('revoke').click();
  await expect.poll(async () => (await asScript()).status).toBe(401);
});

test('a saved key shows only its hint, anywhere', async ({ page, paddock }) => {
  const canary = 'sk-ant-e2e-canary-5b8e1f0c9a7d4e2b';
  await gotoHydrated(page, `${paddock.url}/credentials`);
  const server = page.getByTestId('credential-server');
  await expect(server.getByTestId('credential-none')).toBeVisible();
  await server.getByLabel('New key').fill(canary);
  await server.getByTestId('save-credential').click();
  await expect(server.getByTestId('credential-hint')).toContainText(canary.slice(-4));
  await page.reload();
  await expect(server.getByTestId('credential-hint')).toContainText(canary.slice(-4));
  expect(await page.content()).not.toContain(canary);
  const answer = await page.request.post(`${paddock.url}/api/list_credentials`, { headers: { origin: paddock.url } });
  expect(answer.status()).toBe(200);
  expect(await answer.text()).not.toContain(canary);
  expect(paddock.log).not.toContain(canary);
});

test.describe('sharing', () => {
  test.use({ scenario: { turns: [{ reply: 'Hello to everyone watching.' }] } });

  test('a member the admin adds watches a shared session live but cannot prompt', async ({ page, browser, paddock }) => {
    // The admin adds a member on the Users page.
    await gotoHydrated(page, `${paddock.url}/users`);
    const form = page.getByTestId('add-user-form');
    await form.getByLabel('Login').fill('max');
    await form.getByLabel('Display name').fill('Max');
    await form.getByLabel('First password').fill('max password, long');
    await form.getByRole('button', { name: 'Add user' }).click();
    await expect(page.locator('[data-testid="user-row"][data-login="max"]')).toContainText('member');

    const id = await openNewSession(page, paddock, { name: 'pairing', permission_mode: 'auto' });
    const max = await (await browser.newContext()).newPage();
    await signIn(max, paddock, 'max', 'max password, long');
    // Not shared yet: not in Max's list, and its page is a 404 to him.
    await expect(max.getByTestId('session-list').getByText('pairing')).toHaveCount(0);
    expect((await max.goto(`${paddock.url}/sessions/${id}`))!.status()).toBe(404);

    await page.getByTestId('people').locator('summary').click();
    // A mistyped login is said, and kept to be mended; once shared, the
    // form is empty again.
    const login = page.getByLabel('Share with (login)');
    await login.fill('mxa');
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await expect(page.getByTestId('people').getByRole('alert')).toBeVisible();
    await expect(login).toHaveValue('mxa');
    await login.fill('max');
    await page.getByLabel('They may').selectOption('watch');
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await expect(page.locator('[data-testid="share-row"][data-login="max"]')).toBeVisible();
    await expect(login).toHaveValue('');

    await gotoHydrated(max, `${paddock.url}/sessions/${id}`);
    await expect(max.getByTestId('connection')).toHaveAttribute('data-state', 'live');
    await expect(max.getByTestId('watch-only')).toBeVisible();
    await expect(max.getByLabel('Prompt')).toHaveCount(0);
    await expect(max.getByRole('button', { name: 'Delete session' })).toHaveCount(0);
    // The owner sees who is watching.
    await expect(page.getByTestId('watching')).toContainText('max', { timeout: 15_000 });

    // Max follows the owner's prompt live.
    await sendPrompt(page, 'say hello');
    await expect(max.getByText('Hello to everyone watching.')).toBeVisible();
    // His list shows the session, without a Delete only its owner has.
    const list = await max.context().newPage();
    await gotoHydrated(list, `${paddock.url}/`);
    const row = list.getByTestId('session-row').filter({ hasText: 'pairing' });
    await expect(row).toBeVisible();
    await expect(row.getByTestId('delete')).toHaveCount(0);
    await list.close();

    // A page of a browser without SharedWorker follows it over a stream
    // of its own.
    const lone = await max.context().newPage();
    await lone.addInitScript(() => { delete (window as any).SharedWorker; });
    await gotoHydrated(lone, `${paddock.url}/sessions/${id}`);
    await expect(lone.getByTestId('connection')).toHaveAttribute('data-state', 'live');
    let asked = 0;
    lone.on('request', (r) => { if (r.url().includes(`/api/sessions/${id}/events`)) asked += 1; });

    // Made an operator, his page offers the composer at once.
    await page.locator('[data-testid="share-row"][data-login="max"]').getByTestId('share-level').selectOption('operate');
    await expect(max.getByLabel('Prompt')).toBeVisible();

    // Unshared, his open pages lose the stream, and a reload is a 404.
    await page.locator('[data-testid="share-row"][data-login="max"]').getByTestId('unshare').click();
    // They say so, stop trying, and offer nothing to do any more.
    for (const p of [max, lone]) {
      await expect(p.getByTestId('connection')).toHaveAttribute('data-state', 'gone');
      await expect(p.getByTestId('connection')).toContainText('no longer shared with you');
    }
    await expect(max.getByLabel('Prompt')).toHaveCount(0);
    await expect(max.getByTestId('watch-only')).toBeVisible();
    const after = asked;
    await lone.waitForTimeout(5_000);
    expect(asked).toBe(after);
    expect((await max.reload())!.status()).toBe(404);
  });
});

test('the admin pages are for admins only', async ({ browser, paddock }) => {
  paddock.cli(['user', 'add', 'vic', '--role', 'viewer'], 'viewer password, long\n');
  const vic = await (await browser.newContext()).newPage();
  await signIn(vic, paddock, 'vic', 'viewer password, long');
  for (const path of ['/users', '/audit']) {
    await gotoHydrated(vic, `${paddock.url}${path}`);
    await expect(vic.getByRole('alert')).toContainText('Only an admin');
  }
  // A viewer reads shared sessions; creating one is refused.
  await gotoHydrated(vic, paddock.url);
  await expect(vic.getByTestId('viewer-note')).toBeVisible();
  await expect(vic.getByRole('button', { name: 'Create session' })).toHaveCount(0);
  const created = await vic.request.post(`${paddock.url}/api/create_session`, { headers: { origin: paddock.url }, form: { name: 'mine' } });
  expect(created.status()).toBe(403);
});
