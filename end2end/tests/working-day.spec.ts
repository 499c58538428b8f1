import { test, expect, gotoHydrated, openNewSession, sendPrompt, sessionsLoaded } from './fixtures';

// The small things a person notices in a day with the dashboard: the
// favicon, times they can read, copy buttons, keyboard shortcuts.

test('every page load finds its favicon: no 404 on the way', async ({ page, paddock }) => {
  const missing: string[] = [];
  page.on('response', (res) => {
    if (res.status() === 404) missing.push(res.url());
  });
  await gotoHydrated(page, paddock.url);
  await openNewSession(page, paddock, { name: 'icons' });
  expect(missing).toEqual([]);
  const icon = await page.request.get(`${paddock.url}/favicon.ico`);
  expect(icon.status()).toBe(200);
  expect((await icon.body()).subarray(0, 4)).toEqual(Buffer.from([0, 0, 1, 0]));
  await expect(page.locator('link[rel="icon"][href="/favicon.ico"]')).toHaveCount(1);
});

test.describe('a session with code and a tool', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { expect: { contains: ['show code'] }, reply: 'Here it is:\n\n```sh\necho "copied from a block"\n```' },
      { expect: { contains: ['run it'] }, reply: [{ tool_use: { name: 'bash', input: { command: 'echo from the tool' } } }] },
      { reply: 'Done.' },
    ] },
  });

  test('times read "just now" with the exact time on hover; code and tool output copy', async ({ page, context, paddock }) => {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: paddock.url });
    const id = await openNewSession(page, paddock, { name: 'copier', permission_mode: 'auto' });
    const activity = page.getByTestId('activity').locator('time');
    await expect(activity).toHaveText('just now');
    await expect(activity).toHaveAttribute('title', /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/);

    await sendPrompt(page, 'show code');
    const block = page.locator('.markdown figure.code-block');
    await expect(block).toContainText('copied from a block');
    await block.getByRole('button', { name: 'Copy' }).click();
    await expect(block.getByRole('button', { name: 'Copied' })).toBeVisible();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe('echo "copied from a block"\n');
    // It says so for a moment, then offers again.
    await expect(block.getByRole('button', { name: 'Copy' })).toBeVisible();

    await sendPrompt(page, 'run it');
    await expect(page.getByText('Done.')).toBeVisible();
    const output = page.getByTestId('tool-output');
    await output.locator('summary').click();
    await output.getByRole('button', { name: 'Copy' }).click();
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toMatch(/^from the tool\n?$/);

    // The sessions list says how long ago too.
    await gotoHydrated(page, paddock.url);
    const row = page.locator(`[data-testid="session-row"][data-id="${id}"]`);
    await expect(row.locator('time')).toHaveText('just now');
  });

});

test.describe('the keyboard', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { expect: { contains: ['ask me'] }, reply: [{ tool_use: { name: 'bash', input: { command: 'echo waiting' } } }] },
    ] },
  });

  test('keyboard: ? lists the shortcuts, n starts a session, / writes a prompt, a opens the session waiting for you', async ({ page, paddock }) => {
    await gotoHydrated(page, paddock.url);
    await sessionsLoaded(page);
    // Nothing waits yet.
    await page.keyboard.press('a');
    await expect(page.getByTestId('shortcut-note')).toHaveText('No session is waiting for you.');

    await page.keyboard.press('?');
    const help = page.getByTestId('shortcuts-help');
    await expect(help).toBeVisible();
    await expect(help).toContainText('New session');
    await page.keyboard.press('Escape');
    await expect(help).toBeHidden();

    // A session that asks before its tool runs.
    const id = await openNewSession(page, paddock, { name: 'asking', permission_mode: 'ask' });
    await page.keyboard.press('/');
    await expect(page.getByLabel('Prompt')).toBeFocused();
    // Typed into the prompt, keys are text, not shortcuts.
    await page.keyboard.type('ask me now');
    await expect(page.getByLabel('Prompt')).toHaveValue('ask me now');
    await page.keyboard.press('Enter');
    await expect(page.getByTestId('permission-card')).toBeVisible();

    // From another page, "a" opens it at the request.
    await page.getByLabel('Prompt').blur();
    await page.keyboard.press('n');
    await expect(page).toHaveURL(`${paddock.url}/`);
    await expect(page.getByLabel('Name')).toBeFocused();
    await page.getByLabel('Name').blur();
    await page.keyboard.press('a');
    await expect(page).toHaveURL(`${paddock.url}/sessions/${id}#pending`);
    await expect(page.getByTestId('permission-card')).toBeVisible();

    // Single keys can be turned off, and on again from the account menu;
    // the browser remembers.
    await page.keyboard.press('?');
    await help.getByTestId('single-keys').uncheck();
    await help.getByRole('button', { name: 'Close' }).click();
    await expect.poll(() => page.evaluate(() => localStorage.getItem('paddock.shortcuts.off'))).toBe('1');
    await page.reload();
    await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
    await page.getByTestId('account-name').click();
    await page.getByTestId('open-shortcuts').click();
    await expect(help.getByTestId('single-keys')).not.toBeChecked();
    await help.getByRole('button', { name: 'Close' }).click();
    // The keys' listener runs as each key is pressed: after a round trip
    // through the page, whatever they would do has begun.
    for (const key of ['n', '?']) await page.keyboard.press(key);
    await page.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    await expect(help).toBeHidden();
    await expect(page).toHaveURL(`${paddock.url}/sessions/${id}#pending`);
    await page.getByTestId('account-name').click();
    await page.getByTestId('open-shortcuts').click();
    await expect(help.getByTestId('single-keys')).not.toBeChecked();
    await help.getByTestId('single-keys').check();
    await help.getByRole('button', { name: 'Close' }).click();
    await page.keyboard.press('n');
    await expect(page).toHaveURL(`${paddock.url}/`);
  });
});

test('the owner edits a session\'s name, model, permissions and budget where it is', async ({ page, context, paddock }) => {
  const id = await openNewSession(page, paddock, { name: 'first name' });
  // Another tab on it sees the change without a reload.
  const other = await context.newPage();
  await gotoHydrated(other, `${paddock.url}/sessions/${id}`);
  await sessionsLoaded(other);
  await page.getByText('Settings', { exact: true }).click();
  await page.getByTestId('edit-settings').click();
  const form = page.getByTestId('settings-form');
  await form.getByLabel('Budget').fill('a lot');
  await form.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('alert')).toContainText('not an amount');

  await form.getByLabel('Name').fill('Second name');
  await form.getByLabel('Model').fill('claude-haiku-4-5');
  await form.getByLabel('Permissions').selectOption('read-only');
  await form.getByLabel('Budget').fill('1.5');
  await form.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByTestId('session-title')).toHaveText('Second name');
  await expect(page).toHaveTitle('Second name · Paddock');
  await expect(page.getByTestId('setting-model')).toHaveText('claude-haiku-4-5');
  await expect(page.getByTestId('setting-permissions')).toHaveText('read-only');
  await expect(page.getByTestId('setting-budget')).toHaveText('$1.50');
  await expect(other.getByTestId('session-title')).toHaveText('Second name');
  await expect(other.getByTestId('setting-model')).toHaveText('claude-haiku-4-5');
  await expect(other.getByTestId('setting-budget')).toHaveText('$1.50');
  await expect(other.getByTestId('delete')).toHaveAttribute('aria-label', 'Delete session Second name');
  await other.close();

  const stored = await (await paddock.api(`/api/sessions/${id}`)).json();
  expect([stored.name, stored.model, stored.permission_mode, stored.budget_usd]).toEqual(['Second name', 'claude-haiku-4-5', 'read-only', 1.5]);
  await page.reload();
  await expect(page.getByTestId('session-title')).toHaveText('Second name');
});
