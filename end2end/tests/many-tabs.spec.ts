import { test, expect, gotoHydrated, type Paddock } from './fixtures';
import type { Page } from '@playwright/test';

// Twenty dashboard tabs in one browser, over plain HTTP/1.1 (six
// connections per origin): every tab loads and follows live, because the
// tabs share one connection (public/live-worker.js over /api/live).

const TABS = 20;

async function createSession(paddock: Paddock, name: string): Promise<string> {
  const res = await paddock.api('/api/sessions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  expect(res.status).toBe(201);
  return (await res.json()).id as string;
}

async function prompt(paddock: Paddock, id: string, text: string): Promise<void> {
  const res = await paddock.api(`/api/sessions/${id}/prompt`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  expect(res.status).toBe(202);
}

/** The server's live viewers of each kind (`paddock_viewers`). */
async function viewers(paddock: Paddock): Promise<{ events: number; updates: number }> {
  const text = await (await paddock.api('/metrics')).text();
  const value = (stream: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`paddock_viewers{stream="${stream}"}`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  return { events: value('events'), updates: value('updates') };
}

test.describe('many tabs', () => {
  test.use({
    scenario: { turns: [
      { expect: { contains: ['first'] }, reply: 'Reply to the first prompt.' },
      { expect: { contains: ['second'] }, reply: 'Reply to the second prompt.' },
      { expect: { contains: ['third'] }, reply: 'Reply to the third prompt.' },
      { expect: { contains: ['last'] }, reply: 'Reply to the last prompt.' },
    ] },
  });

  test('twenty tabs in one browser all load and follow live, over one connection', async ({ page, context, paddock }) => {
    test.setTimeout(120_000);
    const sessions = [
      await createSession(paddock, 'alpha'),
      await createSession(paddock, 'beta'),
      await createSession(paddock, 'gamma'),
    ];
    // Five tabs on the list, five on each session, opened one after another.
    const lists: Page[] = [];
    const on = new Map<string, Page[]>(sessions.map((id) => [id, []]));
    for (let i = 0; i < TABS; i++) {
      const tab = i === 0 ? page : await context.newPage();
      if (i % 4 === 0) {
        await gotoHydrated(tab, paddock.url);
        await expect(tab.getByTestId('session-row')).toHaveCount(3);
        lists.push(tab);
      } else {
        const id = sessions[i % 4 - 1];
        await gotoHydrated(tab, `${paddock.url}/sessions/${id}`);
        await expect(tab.getByTestId('connection')).toHaveAttribute('data-state', 'live');
        on.get(id)!.push(tab);
      }
    }
    expect(context.pages()).toHaveLength(TABS);
    // One stream per session and one list for the whole browser, not one per tab.
    await expect.poll(() => viewers(paddock)).toEqual({ events: 3, updates: 1 });

    // Each session's prompt reaches each of its tabs, once.
    const words = ['first', 'second', 'third'];
    for (const [n, id] of sessions.entries()) {
      await prompt(paddock, id, `the ${words[n]} prompt`);
      for (const tab of on.get(id)!) {
        await expect(tab.getByText(`Reply to the ${words[n]} prompt.`)).toHaveCount(1);
        await expect(tab.getByText(`the ${words[n]} prompt`, { exact: true })).toHaveCount(1);
      }
    }
    // A session made elsewhere shows up in every list tab.
    await createSession(paddock, 'delta');
    for (const tab of lists) await expect(tab.getByTestId('session-row')).toHaveCount(4);

    // Closing tabs lets go of what only they followed; the others go on.
    for (const tab of [...on.get(sessions[2])!, ...lists.slice(1)]) await tab.close();
    await expect.poll(() => viewers(paddock)).toEqual({ events: 2, updates: 1 });
    const last = on.get(sessions[0])!.at(-1)!;
    await prompt(paddock, sessions[0], 'the last prompt');
    await expect(last.getByText('Reply to the last prompt.')).toHaveCount(1);
    await expect(last.locator('[data-seq]')).toHaveCount(await on.get(sessions[0])![0].locator('[data-seq]').count());
  });
});
