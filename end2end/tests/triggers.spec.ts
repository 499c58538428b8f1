// An agent's triggers in the dashboard: one made on the agent's page shows
// its secret once, a delivery signed with it by the sender's own library
// (PyPI standardwebhooks, from scripts/setup --tests) starts a session that
// the list marks and whose transcript shows the delivery; the delivery
// log, pausing and a new secret.
import { test, expect, gotoHydrated } from './fixtures';
import { execFileSync } from 'node:child_process';
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
