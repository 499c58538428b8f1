import { test, expect, gotoHydrated, type Paddock } from '../tests/fixtures';
import type { Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

// One tab against twenty, all on one session in one browser: the browser's
// open connections to the server, the server's memory, and the time from an
// event's commit (its `at`) to its card in the first and in the last tab,
// p50/p99 over every event of PROMPTS prompts. Results: stdout and
// test-results/bench-tabs.json.

const PROMPTS = 30;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Connections the browser holds to the server. */
function browserConnections(paddock: Paddock): number {
  const port = new URL(paddock.url).port;
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes('chrom')).length;
}

/** The server's resident memory, in MiB. */
function serverRssMiB(paddock: Paddock): number {
  const status = readFileSync(`/proc/${paddock.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

/** Each stored event's commit time (ms since the epoch), by seq, read from
 * the session's own stream up to event `last`. */
async function commitTimes(paddock: Paddock, id: string, last: number): Promise<Map<number, number>> {
  const res = await paddock.api(`/api/sessions/${id}/events`);
  const reader = res.body!.getReader();
  const times = new Map<number, number>();
  let text = '';
  while (!times.has(last)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    let end: number;
    while ((end = text.indexOf('\n\n')) >= 0) {
      const frame = text.slice(0, end);
      text = text.slice(end + 2);
      const data = frame.split('\n').find((l) => l.startsWith('data:'));
      if (frame.includes('event: event') && data) {
        const event = JSON.parse(data.slice(5));
        times.set(event.seq, Date.parse(event.at));
      }
    }
  }
  await reader.cancel();
  return times;
}

/** Records in the page when each card (data-seq) first appears. */
async function watchCards(tab: Page): Promise<void> {
  await tab.evaluate(() => {
    const seen: Record<string, number> = {};
    (window as any).__seen = seen;
    const note = (el: Element) => {
      const seq = el.getAttribute('data-seq');
      if (seq && !(seq in seen)) seen[seq] = performance.timeOrigin + performance.now();
    };
    new MutationObserver((records) => {
      for (const r of records)
        for (const n of r.addedNodes)
          if (n instanceof Element) {
            note(n);
            n.querySelectorAll('[data-seq]').forEach(note);
          }
    }).observe(document.body, { childList: true, subtree: true });
  });
}

async function createSession(paddock: Paddock): Promise<string> {
  const res = await paddock.api('/api/sessions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench' }),
  });
  return (await res.json()).id as string;
}

const results: Record<string, unknown>[] = [];

for (const tabs of [1, 20]) {
  test.describe(`${tabs} tab(s)`, () => {
    test.use({ scenario: { turns: Array.from({ length: PROMPTS }, (_, i) => ({ reply: `Answer number ${i + 1}.` })) } });

    test(`${tabs} tab(s) on one session`, async ({ page, context, paddock }) => {
      const id = await createSession(paddock);
      const before = serverRssMiB(paddock);
      const pages: Page[] = [];
      for (let i = 0; i < tabs; i++) {
        const tab = i === 0 ? page : await context.newPage();
        await gotoHydrated(tab, `${paddock.url}/sessions/${id}`);
        await expect(tab.getByTestId('connection')).toHaveAttribute('data-state', 'live');
        await watchCards(tab);
        pages.push(tab);
      }
      const connections = browserConnections(paddock);
      for (let i = 0; i < PROMPTS; i++) {
        const res = await paddock.api(`/api/sessions/${id}/prompt`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ text: `prompt ${i + 1}` }),
        });
        expect(res.status).toBe(202);
        for (const tab of pages) await expect(tab.getByText(`Answer number ${i + 1}.`)).toBeVisible();
      }
      const rss = serverRssMiB(paddock);
      const seen = await Promise.all(pages.map((tab) => tab.evaluate(() => (window as any).__seen as Record<string, number>)));
      const seqs = Object.keys(seen[0]).map(Number);
      const last = Math.max(...seqs);
      const committed = await commitTimes(paddock, id, last);
      const measured = seqs.filter((seq) => committed.has(seq) && seen.every((s) => String(seq) in s));
      const delays = (pick: (times: number[]) => number) =>
        measured.map((seq) => pick(seen.map((s) => s[String(seq)])) - committed.get(seq)!).sort((a, b) => a - b);
      const toLast = delays((times) => Math.max(...times));
      const toFirst = delays((times) => Math.min(...times));
      const row = {
        tabs,
        events: measured.length,
        browser_connections: connections,
        server_rss_mib_before: Number(before.toFixed(1)),
        server_rss_mib_after: Number(rss.toFixed(1)),
        to_first_tab_p50_ms: Number(percentile(toFirst, 50).toFixed(1)),
        to_first_tab_p99_ms: Number(percentile(toFirst, 99).toFixed(1)),
        to_last_tab_p50_ms: Number(percentile(toLast, 50).toFixed(1)),
        to_last_tab_p99_ms: Number(percentile(toLast, 99).toFixed(1)),
      };
      console.log(JSON.stringify(row));
      results.push(row);
      mkdirSync(join(__dirname, '..', 'test-results'), { recursive: true });
      writeFileSync(join(__dirname, '..', 'test-results', 'bench-tabs.json'), JSON.stringify(results, null, 2));
    });
  });
}
