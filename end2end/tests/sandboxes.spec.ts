import { test, expect, gotoHydrated, containerExists, sendPrompt } from './fixtures';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

test.describe('with Docker sandboxes', () => {
  test.use({ sandbox: 'docker' });

  test('a session gets a container; deleting it removes container and workspace', async ({ page, paddock }) => {
    await gotoHydrated(page, paddock.url);
    await expect(page.getByTestId('sandbox-warning')).toHaveCount(0);
    await page.getByLabel('Name').fill('Short-lived');
    await page.getByRole('button', { name: 'Create session' }).click();
    await expect(page.getByTestId('session-title')).toHaveText('Short-lived');
    await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
    const id = page.url().split('/').pop()!;
    await expect.poll(() => containerExists(id)).toBe(true);
    expect(existsSync(join(paddock.workspaces, id))).toBe(true);

    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Delete session' }).click();
    await expect(page).toHaveURL(paddock.url + '/');
    await expect(page.getByTestId('sessions-empty')).toBeVisible();
    expect(containerExists(id)).toBe(false);
    expect(existsSync(join(paddock.workspaces, id))).toBe(false);
  });
});

test.describe('a session with network access', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { reply: [{ tool_use: { name: 'bash', input: { command: 'curl -sS http://downloads.example.org/tool.tar.gz' } } }] },
      { expect: { tool_result_contains: 'not in this session\'s network allowlist' }, reply: 'That host is not allowed.' },
    ] },
  });

  test('lists its hosts in the form; anything else is refused, in the tool result and the transcript', async ({ page, paddock }) => {
    await gotoHydrated(page, paddock.url);
    await page.getByLabel('Name').fill('Networked');
    await page.getByLabel('Permissions').selectOption('auto');
    await page.getByText('More options').click();
    await page.getByLabel('Network access').fill('Mirror.Example.com\n*.example.net:8443');
    await page.getByRole('button', { name: 'Create session' }).click();
    await expect(page.getByTestId('session-title')).toHaveText('Networked');
    const id = page.url().split('/').pop()!;
    expect((await (await paddock.api(`/api/sessions/${id}`)).json()).egress).toEqual(['mirror.example.com', '*.example.net:8443']);
    await page.getByText('Settings').click();
    await expect(page.getByText('mirror.example.com, *.example.net:8443')).toBeVisible();

    await sendPrompt(page, 'fetch the tool');
    const refused = page.getByTestId('egress-event');
    await expect(refused).toHaveText('Network: downloads.example.org:80 · refused: not in this session\'s network allowlist');
    await expect(refused).toHaveAttribute('data-allowed', 'false');
    await expect(page.getByText('That host is not allowed.')).toBeVisible();
  });
});

test('local sandboxes are flagged as weaker isolation on every page', async ({ page, paddock }) => {
  await gotoHydrated(page, paddock.url);
  await expect(page.getByTestId('sandbox-warning')).toContainText('Weaker isolation');
  // The page-not-found page too: the same shell, asking the same server.
  const missing = await page.goto(`${paddock.url}/no/such/page`);
  expect(missing?.status()).toBe(404);
  await expect(page.getByTestId('sandbox-warning')).toContainText('Weaker isolation');
  const ready = await page.request.get(`${paddock.url}/readyz`);
  const body = await ready.json();
  expect(body.sandbox.backend).toBe('local');
  expect(body.sandbox.warning).toBeTruthy();
});

test('cancelling the delete confirmation keeps the session', async ({ page, paddock }) => {
  await gotoHydrated(page, paddock.url);
  await page.getByLabel('Name').fill('Keep me');
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByTestId('session-title')).toHaveText('Keep me');
  await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
  page.once('dialog', (d) => void d.dismiss());
  await page.getByRole('button', { name: 'Delete session' }).click();
  await gotoHydrated(page, paddock.url);
  await expect(page.getByTestId('session-list').getByText('Keep me')).toBeVisible();
});
