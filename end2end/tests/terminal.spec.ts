import { test, expect, openNewSession, signIn, gotoHydrated } from './fixtures';
import type { Locator, Page } from '@playwright/test';

/** The terminal's lines as it shows them. */
async function lines(screen: Locator): Promise<string[]> {
  return (await screen.locator('.xterm-rows > div').allInnerTexts()).map((l) => l.replace(/\u00a0/g, ' ').trim());
}

/** Types a command into the focused terminal and presses Enter. */
async function run(page: Page, command: string): Promise<void> {
  await page.keyboard.type(command);
  await page.keyboard.press('Enter');
}

/** The last `stty size` answer the terminal shows. */
async function shownSize(screen: Locator): Promise<string | undefined> {
  return (await lines(screen)).filter((l) => /^\d+ \d+$/.test(l)).pop();
}

test.describe('terminals in Docker sandboxes', () => {
  test.use({ sandbox: 'docker' });

  test('a terminal computes and resizes, is in the transcript, and a watcher gets none', async ({ page, browser, paddock }) => {
    await page.setViewportSize({ width: 1400, height: 900 });
    const id = await openNewSession(page, paddock, { name: 'shell', permission_mode: 'ask' });
    await page.getByTestId('tab-terminal').click();
    await expect(page).toHaveURL(/view=terminal/);
    await expect(page.getByTestId('terminal-empty')).toBeVisible();
    await page.getByTestId('new-terminal').click();
    const screen = page.getByTestId('terminal-screen');
    await expect(screen.locator('.xterm-rows')).toContainText('/workspace$');
    await run(page, 'echo $((6*7))');
    await expect.poll(() => lines(screen)).toContain('42');
    await expect(page.getByTestId('terminal-event').first()).toHaveText('Terminal 1 opened by e2e');

    // The terminal follows its box: a narrower window, fewer columns.
    await run(page, 'stty size');
    await expect.poll(() => shownSize(screen)).toBeDefined();
    const before = (await shownSize(screen))!;
    await page.setViewportSize({ width: 800, height: 700 });
    await expect(async () => {
      await run(page, 'clear; stty size');
      const after = await shownSize(screen);
      expect(after).toBeDefined();
      expect(after).not.toBe(before);
      expect(Number(after!.split(' ')[1])).toBeLessThan(Number(before.split(' ')[1]));
    }).toPass({ timeout: 15_000 });

    // A second one beside it; switching views keeps both open.
    await page.getByTestId('new-terminal').click();
    await expect(page.getByTestId('terminal-tab')).toHaveCount(2);
    await expect(page.getByTestId('terminal-event')).toHaveCount(2);
    await page.getByTestId('tab-files').click();
    await page.getByTestId('tab-terminal').click();
    await page.getByTestId('terminal-tab').first().click();
    await screen.first().click();
    await run(page, 'echo still-$((1+1))');
    await expect.poll(() => lines(screen.first())).toContain('still-2');
    // Closing one says so in the transcript.
    await page.getByTestId('terminal-close').first().click();
    await expect(page.getByTestId('terminal-tab')).toHaveCount(1);
    await expect(page.getByTestId('terminal-event').filter({ hasText: 'closed' })).toHaveText('Terminal 1 of e2e closed: closed by the viewer (e2e)');

    // Someone the session is shared with to watch has no terminal, and the
    // server refuses one asked for all the same.
    paddock.cli(['user', 'add', 'max', '--role', 'member'], 'max password, long\n');
    await page.getByTestId('people').locator('summary').click();
    await page.getByLabel('Share with (login)').fill('max');
    await page.getByLabel('They may').selectOption('watch');
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await expect(page.locator('[data-testid="share-row"][data-login="max"]')).toBeVisible();
    const max = await (await browser.newContext()).newPage();
    await signIn(max, paddock, 'max', 'max password, long');
    await gotoHydrated(max, `${paddock.url}/sessions/${id}?view=terminal`);
    await expect(max.getByTestId('watch-only')).toBeVisible();
    await expect(max.getByTestId('tab-terminal')).toHaveCount(0);
    await expect(max.getByTestId('new-terminal')).toHaveCount(0);
    const opened = await max.evaluate(
      (id) =>
        new Promise<string>((resolve) => {
          const socket = new WebSocket(`ws://${location.host}/api/sessions/${id}/terminal?rows=24&cols=80`);
          socket.onopen = () => resolve('opened');
          socket.onclose = () => resolve('refused');
        }),
      id,
    );
    expect(opened).toBe('refused');
    await expect(page.getByTestId('terminal-event')).toHaveCount(3);

    // Changed to operate while his page is open, the share shows there at
    // once (no reload, sooner than the watchers list's 10 s): the Terminal
    // tab (the view his address asked for, shown now) and the prompt; back
    // to watch, they go again.
    const level = page.locator('[data-testid="share-row"][data-login="max"]').getByTestId('share-level');
    await level.selectOption('operate');
    await expect(max.getByTestId('tab-terminal')).toBeVisible({ timeout: 5_000 });
    await expect(max.getByTestId('new-terminal')).toBeVisible();
    await expect(max.getByLabel('Prompt')).toHaveCount(1);
    await expect(max.getByTestId('watch-only')).toHaveCount(0);
    await level.selectOption('watch');
    await expect(max.getByTestId('watch-only')).toBeVisible({ timeout: 5_000 });
    await expect(max.getByLabel('Prompt')).toHaveCount(0);
    await expect(max.getByTestId('tab-terminal')).toHaveCount(0);
    // Made read-only, the session has no terminal on any open page.
    await level.selectOption('operate');
    await expect(max.getByTestId('tab-terminal')).toBeVisible({ timeout: 5_000 });
    await page.getByText('Settings', { exact: true }).click();
    await page.getByTestId('edit-settings').click();
    await page.getByTestId('settings-form').getByLabel('Permissions').selectOption('read-only');
    await page.getByTestId('settings-form').getByRole('button', { name: 'Save' }).click();
    await expect(page.getByTestId('setting-permissions')).toHaveText('read-only');
    for (const p of [page, max]) await expect(p.getByTestId('tab-terminal')).toHaveCount(0);
  });

  test('a read-only session has no terminal', async ({ page, paddock }) => {
    await openNewSession(page, paddock, { name: 'look only', permission_mode: 'read-only' });
    await expect(page.getByTestId('tab-files')).toBeVisible();
    await expect(page.getByTestId('tab-terminal')).toHaveCount(0);
  });
});
