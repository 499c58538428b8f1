// The live transcript end to end: the real server, real Docker sandboxes, the
// scripted model server (the only stand-in: the real API is unreachable) and
// Debian's Chromium.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test, expect, gotoHydrated, openNewSession, sendPrompt, prompt, snapshot, containerExists, anotherWindow } from './fixtures';

const slow = { chunk: 3, delay_ms: 30 };
const status = (page: import('@playwright/test').Page) => page.locator('header [data-status]').first();

// Every text the streaming block shows, as the page shows it: recorded by
// the page itself, not sampled by polling (which a short stream on a loaded
// machine can fall between).
async function recordStreaming(page: import('@playwright/test').Page) {
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as any).streamed = seen;
    new MutationObserver(() => {
      const text = document.querySelector('[data-testid="streaming"]')?.textContent ?? '';
      if (text && text !== seen.at(-1)) seen.push(text);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

const streamedTexts = (page: import('@playwright/test').Page): Promise<string[]> => page.evaluate(() => (window as any).streamed);

test.describe('a working session', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      {
        reply: [
          { text: 'I will write the file you asked for, then check it. This sentence streams in small pieces.' },
          { tool_use: { name: 'write_file', input: { path: 'hello.txt', content: 'Hello from Paddock\nline two\n' } } },
        ],
        ...slow,
      },
      { reply: 'Done: **hello.txt** is written.\n\n```rust\nfn main() { println!("hi"); }\n```', ...slow },
      // Streams for about 1.5 s, in 18 pieces the second viewer records.
      { expect: { contains: ['second prompt'] }, reply: 'The second answer, streamed to every viewer at once.', chunk: 3, delay_ms: 80 },
    ] },
  });

  test('text streams, a tool card shows the diff, the file lands in the workspace, reload is identical, a second viewer follows live', async ({ page, browser, paddock, model }) => {
    // The sessions list updates live in another tab.
    const list = await anotherWindow(browser, page);
    await gotoHydrated(list, paddock.url);

    const id = await openNewSession(page, paddock, { name: 'writer', permission_mode: 'auto' });
    await expect(list.getByTestId('session-name').filter({ hasText: 'writer' })).toBeVisible();
    await snapshot(page, 'session-empty');

    await sendPrompt(page, 'Create hello.txt');
    await expect(page.getByLabel('Prompt')).toHaveValue('');
    await expect(page.getByTestId('streaming').first()).toBeVisible();
    await expect(page.getByTestId('streaming').first()).toContainText('I will write');
    await expect(status(page)).toHaveAttribute('data-status', 'running');

    const card = page.getByTestId('tool-card').filter({ hasText: 'write_file' });
    await expect(card).toBeVisible();
    await expect(card.getByTestId('diff')).toContainText('+ Hello from Paddock');
    await expect(card).toHaveAttribute('data-state', 'done');
    await expect(page.getByText('hello.txt is written')).toBeVisible();
    await expect(page.locator('pre.code .tok-kw').first()).toHaveText('fn');
    await expect(status(page)).toHaveAttribute('data-status', 'idle');
    await expect(page.getByTestId('streaming')).toHaveCount(0);
    expect(readFileSync(join(paddock.workspaces, id, 'hello.txt'), 'utf8')).toBe('Hello from Paddock\nline two\n');
    await expect(page.getByTestId('turns')).toHaveText('2');
    const cost = await page.getByTestId('cost').innerText();
    expect(cost).not.toBe('$0.0000');
    await expect(list.locator(`[data-id="${id}"] [data-testid="session-cost"]`)).toHaveText(cost);
    await expect(list.locator(`[data-id="${id}"] [data-status]`)).toHaveAttribute('data-status', 'idle');
    await snapshot(page, 'session-transcript');

    const before = await page.getByTestId('transcript').innerText();
    await page.reload();
    await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
    expect(await page.getByTestId('transcript').innerText()).toBe(before);
    await expect(page.getByTestId('cost')).toHaveText(cost);

    // A second browser (its own context) on the same session sees the next
    // prompt and its answer stream in live.
    const other = await anotherWindow(browser, page);
    await gotoHydrated(other, `${paddock.url}/sessions/${id}`);
    await expect(other.getByTestId('connection')).toHaveAttribute('data-state', 'live');
    await recordStreaming(other);
    await sendPrompt(page, 'And a second prompt');
    await expect(other.locator('[data-kind="user_message"]').filter({ hasText: 'And a second prompt' })).toBeVisible();
    await expect(other.getByText('The second answer, streamed to every viewer at once.')).toBeVisible();
    // It grew piece by piece, each a longer start of the answer, before
    // the stored answer replaced it. (The turn streams one text block: the
    // first streaming block is the one.)
    const streamed = await streamedTexts(other);
    expect(streamed.length, streamed.join(' | ')).toBeGreaterThan(2);
    streamed.forEach((text, i) => {
      expect('The second answer, streamed to every viewer at once.'.startsWith(text), text).toBe(true);
      if (i > 0) expect(text.length, text).toBeGreaterThan(streamed[i - 1].length);
    });
    await expect(page.getByText('The second answer, streamed to every viewer at once.')).toBeVisible();
    await expect(status(other)).toHaveAttribute('data-status', 'idle');
    await expect(status(page)).toHaveAttribute('data-status', 'idle');
    expect(await other.getByTestId('transcript').innerText()).toBe(await page.getByTestId('transcript').innerText());
    expect((await model!.state()).used).toBe(3);

    // Narrow screens: nothing overflows sideways.
    await page.setViewportSize({ width: 360, height: 740 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    await snapshot(page, 'session-mobile');
  });
});

test.describe('queue and stop', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { reply: [{ tool_use: { name: 'bash', input: { command: 'sleep 3; echo first' } } }] },
      { reply: 'First done.' },
      { expect: { contains: ['queued prompt'] }, reply: 'The queued prompt is answered.' },
      { reply: [{ tool_use: { name: 'bash', input: { command: 'sleep 60' } } }] },
    ] },
  });

  test('a prompt sent while running is queued, and Stop interrupts a long tool', async ({ page, paddock }) => {
    await openNewSession(page, paddock, { permission_mode: 'auto' });
    await sendPrompt(page, 'start something slow');
    await expect(page.getByTestId('tool-card')).toHaveAttribute('data-state', 'running');
    await expect(page.getByTestId('send')).toHaveText('Queue');
    await sendPrompt(page, 'the queued prompt');
    const queued = page.getByTestId('queued');
    await expect(queued).toBeVisible();
    await snapshot(page, 'session-queued');
    await expect(page.getByText('The queued prompt is answered.')).toBeVisible({ timeout: 20_000 });
    await expect(queued).toHaveCount(0);
    // The queued prompt is shown where its run started: after the first answer.
    const texts = await page.locator('[data-kind]').allInnerTexts();
    const first = texts.findIndex((t) => t.includes('First done.'));
    const second = texts.findIndex((t) => t.includes('the queued prompt'));
    expect(first).toBeGreaterThanOrEqual(0);
    expect(second).toBeGreaterThan(first);

    await sendPrompt(page, 'now something endless');
    const endless = page.getByTestId('tool-card').filter({ hasText: 'sleep 60' });
    await expect(endless).toHaveAttribute('data-state', 'running');
    await page.getByTestId('stop').click();
    await expect(page.locator('[data-kind="status"]').filter({ hasText: 'Stopped.' })).toBeVisible();
    await expect(status(page)).toHaveAttribute('data-status', 'idle');
    await expect(endless).toHaveAttribute('data-state', 'cut-off');
  });

  test('Esc stops too', async ({ page, paddock }) => {
    await openNewSession(page, paddock, { permission_mode: 'auto' });
    await sendPrompt(page, 'start something slow');
    await expect(page.getByTestId('tool-card')).toHaveAttribute('data-state', 'running');
    await page.keyboard.press('Escape');
    await expect(page.locator('[data-kind="status"]').filter({ hasText: 'Stopped.' })).toBeVisible();
  });
});

test.describe('permissions', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { reply: [{ tool_use: { name: 'bash', input: { command: 'echo allowed > allowed.txt' } } }] },
      { reply: 'Ran it.' },
      { reply: [{ tool_use: { name: 'bash', input: { command: 'echo denied > denied.txt' } } }] },
      { expect: { tool_result_contains: 'not on my machine' }, reply: 'Understood, I will not run it.' },
    ] },
  });

  test('allow and deny, seen and decided once by every viewer', async ({ page, browser, paddock }) => {
    const id = await openNewSession(page, paddock, { permission_mode: 'ask' });
    const other = await anotherWindow(browser, page);
    await gotoHydrated(other, `${paddock.url}/sessions/${id}`);
    await expect(other.getByTestId('connection')).toHaveAttribute('data-state', 'live');

    await sendPrompt(page, 'write allowed.txt');
    const card = page.getByTestId('permission-card');
    await expect(card).toContainText('echo allowed > allowed.txt');
    await expect(other.getByTestId('permission-card')).toBeVisible();
    await expect(status(page)).toHaveAttribute('data-status', 'awaiting_permission');
    await snapshot(page, 'session-permission');
    // Keyboard: the buttons are reachable and work with Enter.
    await card.getByTestId('allow').focus();
    await page.keyboard.press('Enter');
    await expect(other.getByTestId('permission-decision')).toHaveAttribute('data-decision', 'allow');
    await expect(other.getByTestId('permission-card').getByTestId('allow')).toHaveCount(0);
    await expect(page.getByText('Ran it.')).toBeVisible();
    expect(existsSync(join(paddock.workspaces, id, 'allowed.txt'))).toBe(true);

    await sendPrompt(page, 'write denied.txt');
    const second = other.getByTestId('permission-card').nth(1);
    await expect(second).toContainText('echo denied');
    await second.getByLabel('Reason for denying (optional)').fill('not on my machine');
    // Esc in the reason is the field's: no Stop is asked for, and the
    // agent still waits.
    const stops: string[] = [];
    other.on('request', (r) => { if (r.url().includes('stop_session')) stops.push(r.url()); });
    await second.getByLabel('Reason for denying (optional)').press('Escape');
    await other.waitForTimeout(500);
    expect(stops).toEqual([]);
    await expect(status(other)).toHaveAttribute('data-status', 'awaiting_permission');
    await second.getByTestId('deny').click();
    await expect(page.getByTestId('permission-decision').nth(1)).toHaveAttribute('data-decision', 'deny');
    await expect(page.getByText('Understood, I will not run it.')).toBeVisible();
    expect(existsSync(join(paddock.workspaces, id, 'denied.txt'))).toBe(false);
  });
});

const hostile = '</title><script>window.__pwned=1</script><img src=x onerror="window.__pwned=1"> [click](javascript:window.__pwned=1)';

test.describe('hostile strings', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { reply: [{ text: `Model says: ${hostile}` }, { tool_use: { name: 'bash', input: { command: `printf '%s' '<img src=x onerror=window.__pwned=1>'` } } }] },
      { reply: `And again: ${hostile}\n\n<div onmouseover="window.__pwned=1">hover</div>` },
    ] },
  });

  test('in prompts, model text and tool output they render as inert text', async ({ page, paddock }) => {
    await openNewSession(page, paddock, { name: hostile, permission_mode: 'auto' });
    await sendPrompt(page, `User says: ${hostile}`);
    await expect(page.getByText('And again:')).toBeVisible();
    await expect(status(page)).toHaveAttribute('data-status', 'idle');
    const transcript = page.getByTestId('transcript');
    await expect(transcript.locator('img, script, iframe, [onerror], [onmouseover]')).toHaveCount(0);
    await expect(transcript.locator('a[href^="javascript"]')).toHaveCount(0);
    await expect(transcript.getByText('User says: </title><script>window.__pwned=1</script>')).toBeVisible();
    await page.getByTestId('tool-output').locator('summary').click();
    await expect(page.getByTestId('tool-output')).toContainText('<img src=x onerror=window.__pwned=1>');
    // Rendered by the server, the name is the page's title as text.
    await page.reload();
    await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
    await expect(page).toHaveTitle(`${hostile} · Paddock`);
    await expect(page.getByTestId('transcript').locator('img, script, [onerror]')).toHaveCount(0);
    expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined();
  });
});

test.describe('restarts and deletion', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { reply: 'Before the restart.' },
      { expect: { contains: ['Before the restart.', 'after the restart'] }, reply: 'After the restart, same conversation.', ...slow },
    ] },
  });

  test('the page reconnects after a server restart and continues; deleting removes the session everywhere', async ({ page, paddock }) => {
    const id = await openNewSession(page, paddock, { permission_mode: 'auto' });
    await sendPrompt(page, 'first');
    await expect(page.getByText('Before the restart.')).toBeVisible();
    await expect(status(page)).toHaveAttribute('data-status', 'idle');

    await paddock.restart();
    await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live', { timeout: 20_000 });
    await recordStreaming(page);
    await sendPrompt(page, 'after the restart');
    await expect(page.getByText('After the restart, same conversation.')).toBeVisible();
    // It streamed in live over the new connection.
    const streamed = await streamedTexts(page);
    expect(streamed.length, streamed.join(' | ')).toBeGreaterThan(0);
    streamed.forEach((text) => expect('After the restart, same conversation.'.startsWith(text), text).toBe(true));
    const seqs = await page.locator('[data-seq]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-seq'))));
    expect(new Set(seqs).size).toBe(seqs.length);

    await gotoHydrated(page, paddock.url);
    const row = page.locator(`[data-id="${id}"]`);
    await expect(row).toBeVisible();
    await snapshot(page, 'sessions-list');
    expect(containerExists(id)).toBe(true);
    page.once('dialog', (d) => d.accept());
    await row.getByTestId('delete').click();
    await expect(row).toHaveCount(0);
    await expect(page.getByTestId('sessions-empty')).toBeVisible();
    expect(containerExists(id)).toBe(false);
    expect(existsSync(join(paddock.workspaces, id))).toBe(false);
  });
});

test.describe('a database restored from a backup', () => {
  test.use({ scenario: { turns: [{ reply: 'Kept in the backup.' }, { reply: 'Lost with the restore.' }] } });

  // The SQLite file and its WAL, copied while the server is stopped.
  const files = ['paddock.db', 'paddock.db-wal', 'paddock.db-shm'];
  const copy = (from: string, to: string) =>
    files.forEach((f) => {
      rmSync(join(to, f), { force: true });
      if (existsSync(join(from, f))) copyFileSync(join(from, f), join(to, f));
    });

  // Through the tabs' shared connection, and over a stream of its own (a
  // browser without SharedWorker).
  for (const connection of ['shared', 'own'] as const) test(`an open page holding events the restored database lacks reads the session afresh (${connection} connection)`, async ({ page, paddock }) => {
    if (connection === 'own') await page.addInitScript(() => { delete (window as any).SharedWorker; });
    await openNewSession(page, paddock, { permission_mode: 'auto' });
    await sendPrompt(page, 'first');
    await expect(page.getByText('Kept in the backup.')).toBeVisible();
    await expect(status(page)).toHaveAttribute('data-status', 'idle');
    const addr = new URL(paddock.url).host;
    const backup = join(paddock.dataDir, 'backup');
    await paddock.stop();
    rmSync(backup, { recursive: true, force: true });
    mkdirSync(backup);
    copy(paddock.dataDir, backup);
    await paddock.start(addr);
    await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live', { timeout: 20_000 });
    await sendPrompt(page, 'second');
    await expect(page.getByText('Lost with the restore.')).toBeVisible();
    await expect(status(page)).toHaveAttribute('data-status', 'idle');

    await paddock.stop();
    copy(backup, paddock.dataDir);
    await paddock.start(addr);
    // Resuming after its newest event is refused; the page loads again and
    // shows the session as the restored database has it, live.
    await expect(page.getByText('Lost with the restore.')).toHaveCount(0, { timeout: 20_000 });
    await expect(page.getByText('Kept in the backup.')).toBeVisible();
    await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  });
});

test.describe('a long session', () => {
  const calls = 300;
  const run = (k: number) => [
    // Each call is stored with its result: 600 events in one run.
    { reply: Array.from({ length: calls }, (_, i) => ({ tool_use: { name: 'read_file', input: { path: `missing-${k}-${i}.txt` } } })) },
    { reply: `Done, after many calls (${k}).` },
  ];
  test.use({ scenario: { turns: [...run(1), ...run(2)] } });

  test('a page followed at the bottom keeps its newest runs, and shows the others on demand', async ({ page, paddock }) => {
    const id = await openNewSession(page, paddock, { permission_mode: 'auto' });
    await sendPrompt(page, 'call a lot');
    await expect(page.getByText('Done, after many calls (1).')).toBeVisible({ timeout: 30_000 });
    await prompt(paddock, id, 'and again');
    await expect(page.getByText('Done, after many calls (2).')).toBeVisible({ timeout: 30_000 });
    // All came live, and the page let go of the first run, whole.
    const cards = page.locator('[data-kind="tool_call"]');
    await expect(cards).toHaveCount(calls);
    await expect(page.getByText('call a lot')).toHaveCount(0);
    await expect(page.getByText('and again')).toBeVisible();
    await expect(page.getByTestId('load-earlier')).toContainText('not shown');
    await page.getByTestId('load-earlier').click();
    await expect.poll(() => cards.count()).toBeGreaterThan(calls);
  });
});

test.describe('no model configured', () => {
  test.use({ scenario: null });

  test('the form says so plainly and how to fix it', async ({ page, paddock }) => {
    await gotoHydrated(page, paddock.url);
    await expect(page.getByTestId('model-warning')).toContainText('ANTHROPIC_API_KEY');
    await snapshot(page, 'sessions-empty');
  });
});
