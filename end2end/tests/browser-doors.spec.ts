// Web pages the user merely opens must not drive their Paddock: a page of
// another origin (here another port on loopback) posting forms and no-cors
// fetches, and a page whose name is rebound to 127.0.0.1 (Chromium's own
// resolver told so), in Debian's Chromium against the real server.
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { chromium } from '@playwright/test';
import { test, expect, gotoHydrated, sendPrompt, Paddock } from './fixtures';

/** Serves one HTML page at / on a port of its own: another origin. */
async function servePage(html: string): Promise<[Server, string]> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return [server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/`];
}

/** A session of the user's, made by a script with their token (not a
 * browser: allowed). */
async function userSession(paddock: Paddock): Promise<string> {
  const res = await paddock.api('/api/sessions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'mine', permission_mode: 'auto' }),
  });
  expect(res.status).toBe(201);
  return (await res.json()).id;
}

test.describe('browser-borne requests', () => {
  test.use({ scenario: { turns: [{ reply: 'Only the dashboard got this far.' }] } });

  test('a page of another origin cannot create sessions, send prompts or call the REST API', async ({ page, paddock, model }) => {
    const id = await userSession(paddock);
    const target = paddock.url;
    const [evil, evilUrl] = await servePage(`<!doctype html><title>innocent</title>
      <iframe name="sink"></iframe>
      <form id="create" method="post" target="sink" action="${target}/api/create_session">
        <input name="name" value="evil"><input name="permission_mode" value="auto"></form>
      <form id="prompt" method="post" target="sink" action="${target}/api/send_prompt">
        <input name="id" value="${id}"><input name="text" value="touch /workspace/pwned"></form>`);
    try {
      await page.goto(evilUrl);
      const answers: Record<string, number> = {};
      page.on('response', (r) => { if (r.url().startsWith(target)) answers[`${r.request().method()} ${new URL(r.url()).pathname}`] = r.status(); });

      for (const form of ['create', 'prompt']) {
        const path = form === 'create' ? '/api/create_session' : '/api/send_prompt';
        const answer = page.waitForResponse((r) => r.url() === `${target}${path}`);
        await page.evaluate((f) => (document.getElementById(f) as HTMLFormElement).submit(), form);
        expect((await answer).status()).toBe(403);
      }
      // no-cors fetches need no preflight; their answers are opaque to the
      // page, but the browser sees the status.
      await page.evaluate(async ([target, id]) => {
        const post = (path: string, body?: string) => fetch(target + path, { method: 'POST', mode: 'no-cors', body });
        await post('/api/sessions', '{"name":"evil"}');
        await post(`/api/sessions/${id}/prompt`, '{"text":"touch /workspace/pwned"}');
        await post(`/api/sessions/${id}/stop`);
        await post('/api/delete_session', `id=${id}`);
      }, [target, id]);
      await expect.poll(() => Object.keys(answers).length).toBe(6);
      for (const [request, status] of Object.entries(answers)) expect(status, request).toBe(403);
    } finally {
      evil.close();
    }

    // Nothing was created, prompted, stopped or deleted; the model heard nothing.
    const sessions = await (await paddock.api('/api/sessions')).json();
    expect(sessions.map((s: { id: string }) => s.id)).toEqual([id]);
    expect(sessions[0].last_seq).toBe(0);
    expect((await model!.state()).requests).toHaveLength(0);

    // The dashboard itself, same origin, works as before.
    await gotoHydrated(page, `${paddock.url}/sessions/${id}`);
    await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
    await sendPrompt(page, 'hello');
    await expect(page.getByText('Only the dashboard got this far.')).toBeVisible();
  });

  test('a page whose name is rebound to 127.0.0.1 is refused: pages, server functions, REST and event streams', async ({ paddock }) => {
    const id = await userSession(paddock);
    const port = new URL(paddock.url).port;
    const base = test.info().project.use.launchOptions!;
    const browser = await chromium.launch({
      ...base,
      args: [...(base.args ?? []), '--host-resolver-rules=MAP rebind.evil.test 127.0.0.1'],
    });
    try {
      const page = await browser.newPage();
      const evil = `http://rebind.evil.test:${port}`;
      const response = await page.goto(`${evil}/`);
      expect(response!.status()).toBe(421);
      await expect(page.locator('body')).toContainText('does not serve the host');
      // Same-origin to the browser now: every door still refuses.
      const statuses = await page.evaluate(async (id) => {
        const call = async (path: string, init?: RequestInit) => (await fetch(path, init)).status;
        const form = { 'content-type': 'application/x-www-form-urlencoded' };
        const json = { 'content-type': 'application/json' };
        return {
          page: await call(`/sessions/${id}`),
          list: await call('/api/sessions'),
          transcript: await call(`/api/sessions/${id}/events`),
          updates: await call('/api/updates'),
          serverFn: await call('/api/list_sessions', { method: 'POST', headers: form, body: '' }),
          create: await call('/api/sessions', { method: 'POST', headers: json, body: '{"name":"evil"}' }),
          prompt: await call(`/api/sessions/${id}/prompt`, { method: 'POST', headers: json, body: '{"text":"hi"}' }),
        };
      }, id);
      for (const [door, status] of Object.entries(statuses)) expect(status, door).toBe(421);
    } finally {
      await browser.close();
    }
    const sessions = await (await paddock.api('/api/sessions')).json();
    expect(sessions.map((s: { id: string }) => s.id)).toEqual([id]);
    expect(sessions[0].last_seq).toBe(0);
  });
});
