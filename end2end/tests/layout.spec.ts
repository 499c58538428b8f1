import { test, expect, gotoHydrated, createSession, prompt, sessionsLoaded } from './fixtures';
import type { Page } from '@playwright/test';

// The dashboard for a working day: on a wide screen the sessions beside
// the open one and the workspace beside the transcript; on a phone, the
// same as tabs; and signals when a session needs you.

const WIDE = { width: 1600, height: 900 };
const PHONE = { width: 360, height: 740 };

/** Whether the element `first` comes before `second` in the document. */
async function before(page: Page, first: string, second: string): Promise<boolean> {
  return page.evaluate(([a, b]) => {
    const [x, y] = [document.querySelector(a), document.querySelector(b)];
    return !!x && !!y && (x.compareDocumentPosition(y) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0;
  }, [first, second]);
}

/** Whether anything on the page is wider than the window. */
async function overflows(page: Page): Promise<boolean> {
  return page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
}

test.describe('layout', () => {
  test.use({
    scenario: { turns: [
      { expect: { contains: ['hello beta'] }, reply: 'Beta answers.', usage: { input_tokens: 40000, output_tokens: 20000 } },
      { expect: { contains: ['again beta'] }, reply: 'Beta answers live.' },
    ] },
  });

  test('wide: the sidebar follows every session live, filters them, and switches sessions without reloading the page; the workspace is beside the transcript', async ({ page, paddock }) => {
    await page.setViewportSize(WIDE);
    const alpha = await createSession(paddock, 'alpha build');
    const beta = await createSession(paddock, 'beta docs');
    await createSession(paddock, 'gamma release');
    await gotoHydrated(page, `${paddock.url}/sessions/${alpha}`);
    await sessionsLoaded(page);

    const sidebar = page.getByTestId('sidebar');
    await expect(sidebar.getByTestId('sidebar-row')).toHaveCount(3);
    await expect(sidebar.locator(`[data-id="${alpha}"] a`)).toHaveAttribute('aria-current', 'page');
    // The transcript and the workspace, side by side.
    await expect(page.getByTestId('transcript-empty')).toBeVisible();
    const panel = page.getByTestId('workspace-panel');
    await expect(panel.getByTestId('tab-files')).toHaveAttribute('aria-current', 'page');
    await expect(panel.getByTestId('files')).toBeVisible();
    await expect(panel.getByTestId('tab-transcript')).toHaveCount(0);
    const [left, right] = await Promise.all([
      page.getByTestId('transcript').boundingBox(),
      panel.boundingBox(),
    ]);
    expect(right!.x).toBeGreaterThanOrEqual(left!.x + left!.width);
    expect(await overflows(page)).toBe(false);
    // Keyboard and screen readers meet them in that order too.
    expect(await before(page, '[data-testid="transcript"]', '[data-testid="tab-files"]')).toBe(true);

    // Another session works: its row follows its status and cost, and it
    // is marked done, as it finished while you looked at this one.
    const betaRow = sidebar.locator(`[data-id="${beta}"]`);
    await expect(betaRow.getByTestId('sidebar-cost')).toHaveText('$0.0000');
    await prompt(paddock, beta, 'hello beta');
    await expect(betaRow.getByTestId('sidebar-cost')).not.toHaveText('$0.0000');
    await expect(betaRow).toHaveAttribute('data-attention', 'finished');
    await expect(sidebar.getByTestId('sidebar-row').first()).toHaveAttribute('data-id', beta);

    // Filters: by name, then by status.
    await page.getByTestId('sidebar-filter').fill('DOCS');
    await expect(sidebar.getByTestId('sidebar-name')).toHaveText(['beta docs']);
    await page.getByTestId('sidebar-filter').fill('');
    await page.getByTestId('sidebar-status').selectOption('needs-you');
    await expect(sidebar.getByTestId('sidebar-name')).toHaveText(['beta docs']);
    await page.getByTestId('sidebar-status').selectOption('failed');
    await expect(sidebar.getByTestId('sidebar-none')).toBeVisible();
    await page.getByTestId('sidebar-status').selectOption('all');
    await expect(sidebar.getByTestId('sidebar-row')).toHaveCount(3);

    // Switching keeps the page (no load), and its stream follows.
    await page.evaluate(() => { (window as any).samePage = true; });
    await betaRow.locator('a').click();
    await expect(page).toHaveURL(`${paddock.url}/sessions/${beta}`);
    await expect(page.getByTestId('session-title')).toHaveText('beta docs');
    await expect(page.getByText('Beta answers.')).toBeVisible();
    await expect(betaRow).not.toHaveAttribute('data-attention');
    await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
    expect(await page.evaluate(() => (window as any).samePage)).toBe(true);
    await prompt(paddock, beta, 'again beta');
    await expect(page.getByText('Beta answers live.')).toBeVisible();
  });

  test('narrow: from 360 px the transcript and the workspace are tabs, with nothing wider than the screen', async ({ page, paddock }) => {
    await page.setViewportSize(PHONE);
    const id = await createSession(paddock, 'a session with a rather long name to wrap on a phone');
    // Overflow is checked once the header is complete (the switch shows
    // once the sessions are read).
    await gotoHydrated(page, paddock.url);
    await sessionsLoaded(page);
    expect(await overflows(page)).toBe(false);
    await gotoHydrated(page, `${paddock.url}/sessions/${id}`);
    await sessionsLoaded(page);
    expect(await overflows(page)).toBe(false);
    await expect(page.getByTestId('sidebar')).toHaveCount(0);
    await expect(page.getByTestId('tab-transcript')).toHaveAttribute('aria-current', 'page');
    expect(await before(page, '[data-testid="tab-files"]', '[data-testid="transcript"]')).toBe(true);
    await expect(page.getByLabel('Prompt')).toBeVisible();
    await page.getByTestId('tab-files').click();
    await expect(page.getByTestId('tab-files')).toHaveAttribute('aria-current', 'page');
    await expect(page.getByLabel('Prompt')).toBeHidden();
    expect(await overflows(page)).toBe(false);
    await page.getByTestId('tab-transcript').click();
    await expect(page.getByLabel('Prompt')).toBeVisible();
  });
});

test.describe('attention', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { expect: { contains: ['work quietly'] }, reply: 'All done.' },
      { expect: { contains: ['ask me'] }, reply: [{ tool_use: { name: 'bash', input: { command: 'echo asked' } } }] },
      { reply: 'Ran it.' },
    ] },
  });

  test('the title and favicon count the sessions needing you, the sidebar marks them, and a notification opens the session at the request', async ({ page, context, paddock }) => {
    await context.grantPermissions(['notifications'], { origin: paddock.url });
    // The page's notifications, as it makes them (the browser's own, spied on).
    await page.addInitScript(() => {
      const Real = window.Notification;
      const shown: { title: string; body?: string; tag?: string; n: Notification }[] = [];
      class Spy extends Real {
        constructor(title: string, options?: NotificationOptions) {
          super(title, options);
          shown.push({ title, body: options?.body, tag: options?.tag, n: this });
        }
      }
      (window as any).Notification = Spy;
      (window as any).shown = shown;
    });
    await page.setViewportSize(WIDE);
    const quiet = await createSession(paddock, 'quiet one');
    const asker = await createSession(paddock, 'asker', { permission_mode: 'ask' });
    const list = await createSession(paddock, 'elsewhere');
    await gotoHydrated(page, `${paddock.url}/sessions/${list}`);
    await sessionsLoaded(page);
    await expect(page).toHaveTitle('elsewhere · Paddock');
    const sidebar = page.getByTestId('sidebar');
    await expect(sidebar.getByTestId('sidebar-row')).toHaveCount(3);
    await expect(page.getByTestId('notify-switch')).toHaveAttribute('aria-pressed', 'false');
    await page.getByTestId('notify-switch').click();
    await expect(page.getByTestId('notify-switch')).toHaveAttribute('aria-pressed', 'true');

    // One finishes while you look at another: counted, marked, notified.
    await prompt(paddock, quiet, 'work quietly');
    await expect(page).toHaveTitle('(1) elsewhere · Paddock');
    await expect(sidebar.locator(`[data-id="${quiet}"]`)).toHaveAttribute('data-attention', 'finished');
    await expect(page.locator('link[rel~="icon"]').first()).toHaveAttribute('href', /^data:image\/svg\+xml,/);
    await expect.poll(() => page.evaluate(() => (window as any).shown.map((s: any) => s.body))).toEqual(['quiet one finished']);
    // Another tab of the browser counts it too.
    const second = await context.newPage();
    await gotoHydrated(second, paddock.url);
    await sessionsLoaded(second);
    await expect(second).toHaveTitle('(1) Paddock');
    await second.close();

    // One asks: first in the sidebar, counted, notified.
    await prompt(paddock, asker, 'ask me');
    await expect(page).toHaveTitle('(2) elsewhere · Paddock');
    await expect(sidebar.getByTestId('sidebar-row').first()).toHaveAttribute('data-attention', 'asks');
    await expect.poll(() => page.evaluate(() => (window as any).shown.map((s: any) => s.title))).toEqual(['Paddock: quiet one', 'Paddock: asker']);

    // Its notification, clicked, opens it at the request.
    await page.evaluate(() => (window as any).shown[1].n.dispatchEvent(new Event('click')));
    await expect(page).toHaveURL(`${paddock.url}/sessions/${asker}#pending`);
    await expect(page.getByTestId('permission-card')).toBeInViewport();
    await page.getByTestId('allow').click();
    await expect(page.getByText('Ran it.')).toBeVisible();
    // Decided while looking at it: only the finished one is left.
    await expect(page).toHaveTitle('(1) asker · Paddock');

    // Seen: nothing left, in this tab and in another.
    await sidebar.locator(`[data-id="${quiet}"] a`).click();
    await expect(page).toHaveTitle('quiet one · Paddock');
    await expect(page.locator('link[rel~="icon"]').first()).toHaveAttribute('href', '/favicon.ico');
    const other = await context.newPage();
    await gotoHydrated(other, paddock.url);
    await sessionsLoaded(other);
    await expect(other).toHaveTitle('Paddock');
    await expect(other.getByTestId('notify-switch')).toHaveAttribute('aria-pressed', 'true');
  });
});
