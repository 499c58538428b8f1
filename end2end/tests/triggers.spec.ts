// An agent's triggers in the dashboard: one made on the agent's page shows
// its secret once, a delivery signed with it by the sender's own library
// (PyPI standardwebhooks, from scripts/setup --tests) starts a session that
// the list marks and whose transcript shows the delivery; the delivery
// log, pausing and a new secret. A schedule shows its next runs. A
// notification hears a run finish (verified with standardwebhooks), and
// its log sends it again.
import { test, expect, gotoHydrated } from './fixtures';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The `webhook-signature` the standardwebhooks library makes. */
function sign(secret: string, id: string, at: number, body: string): string {
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const python = join(cache, 'paddock', 'senders', 'bin', 'python');
  const script = join(__dirname, '..', '..', 'server', 'tests', 'senders', 'sign.py');
  return execFileSync(python, [script, 'standard-webhooks', secret, id, String(at)], { input: body, encoding: 'utf8' }).trim();
}

/** Posts a delivery as its sender would. */
async function deliver(url: string, secret: string, id: string, payload: unknown): Promise<Response> {
  const body = JSON.stringify(payload);
  const at = Math.floor(Date.now() / 1000);
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(at), 'webhook-signature': sign(secret, id, at, body) },
    body,
  });
}

test.describe('triggers', () => {
  test.use({ scenario: { turns: [{ reply: 'Looking at the failed build.' }] } });

  test('a trigger made on the agent page starts a session from a signed delivery', async ({ page, paddock }) => {
    const res = await paddock.api('/api/templates', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'On call', session: { permission_mode: 'auto' } }),
    });
    expect(res.status).toBe(201);
    const template = (await res.json()).id as string;
    await gotoHydrated(page, `${paddock.url}/agents/${template}`);
    await expect(page.getByTestId('no-triggers')).toBeVisible();
    await page.getByTestId('new-trigger').locator('summary').click();
    await page.getByLabel('Name').last().fill('failed builds');
    await page.getByLabel(/Conversation key/).fill('{{ payload.branch }}');
    await page.getByTestId('add-trigger').click();
    const secret = (await page.getByTestId('trigger-secret-value').textContent())!.trim();
    expect(secret).toMatch(/^whsec_/);
    const url = (await page.getByTestId('trigger-secret-url').textContent())!.trim();
    expect(url).toMatch(new RegExp(`^${paddock.url}/hooks/[0-9a-f-]{36}$`));
    await expect(page.getByTestId('trigger-name')).toHaveText('failed builds');
    // A save of the agent draws it again; the secret, shown once, stays.
    const edit = page.getByTestId('agent-edit-form');
    await edit.getByLabel('Description').fill('Looks at failed builds.');
    await edit.getByTestId('agent-edit-save').click();
    await expect(page.getByTestId('agent-version')).toHaveText('version 2');
    await expect(page.getByTestId('trigger-secret-value')).toHaveText(secret);

    const delivered = await deliver(url, secret, 'build-4711', { job: 'test', branch: 'main', log: 'assertion failed' });
    expect(delivered.status).toBe(202);
    const session = (await delivered.json()).session as string;

    // The list marks it; its transcript shows the delivery, then the prompt made from it.
    await gotoHydrated(page, paddock.url);
    const row = page.locator(`[data-testid="session-row"][data-id="${session}"]`);
    await expect(row.getByTestId('session-trigger')).toHaveText('trigger: failed builds');
    await row.getByTestId('session-name').click();
    await expect(page.getByTestId('delivery-event')).toHaveText('Delivery build-4711 to the trigger "failed builds"');
    await expect(page.getByTestId('transcript').getByText('The build test failed on main:')).toBeVisible();
    await expect(page.getByTestId('transcript').getByText('Looking at the failed build.')).toBeVisible();

    // The agent's page: the delivery log; paused, deliveries are refused;
    // a new secret, shown once.
    await gotoHydrated(page, `${paddock.url}/agents/${template}`);
    await page.getByTestId('deliveries').locator('summary').click();
    await expect(page.getByTestId('delivery')).toHaveAttribute('data-status', '202');
    await page.getByTestId('pause-trigger').click();
    await expect(page.getByTestId('trigger')).toHaveAttribute('data-paused', 'true');
    expect((await deliver(url, secret, 'build-4712', { job: 'lint', branch: 'main', log: 'x' })).status).toBe(409);
    page.once('dialog', (d) => void d.accept());
    await page.getByTestId('rotate-trigger').click();
    await expect(page.getByTestId('trigger-secret')).toContainText('has a new secret');
    const rotated = (await page.getByTestId('trigger-secret-value').textContent())!.trim();
    expect(rotated).toMatch(/^whsec_/);
    expect(rotated).not.toBe(secret);
  });
});

test.describe('schedules', () => {
  test('a schedule made on the agent page shows its next runs', async ({ page, paddock }) => {
    const res = await paddock.api('/api/templates', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Nightly' }),
    });
    const template = (await res.json()).id as string;
    await gotoHydrated(page, `${paddock.url}/agents/${template}`);
    await page.getByTestId('new-trigger').locator('summary').click();
    await page.getByLabel('Name').last().fill('nightly checks');
    await page.getByTestId('trigger-kind').selectOption('schedule');
    await page.getByTestId('trigger-cron').fill('0 2 * * *');
    // The browser's own time zone is offered.
    await expect(page.getByTestId('trigger-timezone')).not.toHaveValue('');
    await page.getByTestId('trigger-timezone').fill('Europe/Paris');
    await page.getByTestId('add-trigger').click();
    await expect(page.getByTestId('trigger-secret')).toContainText('Trigger "nightly checks" added');
    await expect(page.getByTestId('trigger-secret-value')).toHaveCount(0);
    const item = page.getByTestId('trigger');
    await expect(item).toContainText('schedule · 0 2 * * * in Europe/Paris');
    await expect(item.getByTestId('next-run')).toHaveCount(3);
    await expect(item.getByTestId('trigger-url')).toHaveCount(0);
    // Made, the form is put away as new: a second click makes no second one.
    await expect(page.getByTestId('new-trigger')).not.toHaveAttribute('open', '');
    await expect(page.getByTestId('trigger-kind')).toHaveValue('webhook');
    // A cron that is not one is refused, saying why.
    await page.getByTestId('new-trigger').locator('summary').click();
    await page.getByLabel('Name').last().fill('broken');
    await page.getByTestId('trigger-kind').selectOption('schedule');
    await expect(page.getByTestId('trigger-timezone')).not.toHaveValue('');
    await page.getByTestId('trigger-cron').fill('61 * * * *');
    await page.getByTestId('add-trigger').click();
    await expect(page.getByRole('alert')).toContainText('is not a cron expression');
  });
});

test.describe('notifications', () => {
  test.use({ scenario: { turns: [{ reply: 'The nightly checks pass.' }] } });

  test('a notification made on the agent page hears a run finish, and sends it again', async ({ page, paddock }) => {
    // A receiver on a loopback port, answering 204.
    const got: { headers: Record<string, string>; body: string }[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        got.push({ headers: req.headers as Record<string, string>, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((done) => receiver.listen(0, '127.0.0.1', done));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    try {
      const res = await paddock.api('/api/templates', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Reporter' }),
      });
      const template = (await res.json()).id as string;
      await gotoHydrated(page, `${paddock.url}/agents/${template}`);
      await expect(page.getByTestId('no-notifications')).toBeVisible();
      const form = page.getByTestId('new-notification');
      await form.locator('summary').click();
      await form.getByLabel('URL', { exact: true }).fill(hook);
      await form.getByLabel('permission asked').uncheck();
      await page.getByTestId('add-notification').click();
      const secret = (await page.getByTestId('notification-secret-value').textContent())!.trim();
      expect(secret).toMatch(/^whsec_/);
      await expect(page.getByTestId('notification')).toContainText('a run finished, a run failed');
      await expect(page.getByTestId('notification')).not.toContainText('permission asked');

      // A run of the agent finishes: the receiver hears it, signed.
      const made = await paddock.api('/api/sessions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'nightly', template }),
      });
      const session = (await made.json()).id as string;
      await paddock.api(`/api/sessions/${session}/prompt`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'Run the checks' }),
      });
      await expect.poll(() => got.length, { timeout: 30_000 }).toBe(1);
      const payload = verify(secret, got[0]);
      expect(payload.type).toBe('session.finished');
      expect(payload.data.text).toBe('The nightly checks pass.');
      expect(payload.data.session.url).toMatch(new RegExp(`^http://[^/]+/sessions/${session}$`));

      // The log says so; sent again from it, the same message.
      await gotoHydrated(page, `${paddock.url}/agents/${template}`);
      await page.getByTestId('messages').locator('summary').click();
      await expect(page.getByTestId('message')).toHaveAttribute('data-state', 'delivered');
      await expect(page.getByTestId('message-answer')).toHaveText('204 · 1 tries');
      await page.getByTestId('redeliver').click();
      await expect.poll(() => got.length, { timeout: 30_000 }).toBe(2);
      expect(got[1].headers['webhook-id']).toBe(got[0].headers['webhook-id']);
      expect(verify(secret, got[1]).data.text).toBe('The nightly checks pass.');

      // One session's own notifications, on its page.
      await gotoHydrated(page, `${paddock.url}/sessions/${session}`);
      const own = page.getByTestId('session-notifications');
      await own.locator('summary').first().click();
      await expect(own.getByTestId('no-notifications')).toBeVisible();
      await own.getByTestId('new-notification').locator('summary').click();
      await own.getByLabel('URL', { exact: true }).fill(`${hook}/session`);
      await own.getByTestId('add-notification').click();
      await expect(own.getByTestId('notification-secret-value')).toHaveText(/^whsec_/);
      await expect(own.getByTestId('notification-url')).toHaveText(`${hook}/session`);
    } finally {
      receiver.close();
    }
  });
});

/** A message Paddock sent, as the standardwebhooks library verifies it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function verify(secret: string, message: { headers: Record<string, string>; body: string }): any {
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const python = join(cache, 'paddock', 'senders', 'bin', 'python');
  const script = join(__dirname, '..', '..', 'server', 'tests', 'senders', 'sign.py');
  const headers = Object.fromEntries(['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((n) => [n, message.headers[n]]));
  return JSON.parse(execFileSync(python, [script, 'verify-standard-webhooks', secret], { input: JSON.stringify({ headers, body: message.body }), encoding: 'utf8' }));
}
