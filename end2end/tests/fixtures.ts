import { test as base, expect, Browser, Page } from '@playwright/test';
import { spawn, ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Spawns a server binary; resolves with the URL it prints once listening. */
function spawnListening(bin: string, args: string[], env: NodeJS.ProcessEnv, log: (s: string) => void): [ChildProcess, Promise<string>] {
  const proc = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const listening = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      log(chunk.toString());
      const m = output.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`${bin} exited with ${code}:\n${output}`)));
    setTimeout(() => reject(new Error(`${bin} did not start:\n${output}`)), 20_000);
  });
  return [proc, listening];
}

/** A scripted model's turns (see server/src/scripted). An object, because
 * Playwright reads an array given to test.use as [value, options]. */
export type Scenario = { turns: unknown[] };

/** The scripted Anthropic-compatible model server (`paddock-model`) playing one scenario. */
export class Model {
  private proc?: ChildProcess;
  url = '';
  static readonly key = 'sk-e2e-scripted';
  constructor(readonly scenario: Scenario, readonly dir: string) {}

  async start(): Promise<void> {
    const bin = process.env.PADDOCK_MODEL_BIN;
    if (!bin) throw new Error('PADDOCK_MODEL_BIN must be set (scripts/test does)');
    const file = join(this.dir, 'scenario.json');
    writeFileSync(file, JSON.stringify(this.scenario));
    const [proc, listening] = spawnListening(bin, ['--addr', '127.0.0.1:0', '--scenario', file, '--api-key', Model.key], process.env, () => {});
    this.proc = proc;
    this.url = await listening;
  }

  /** How many scripted turns there are and were played, and the requests received. */
  async state(): Promise<{ turns: number; used: number; requests: any[] }> {
    return (await fetch(`${this.url}/_scripted`)).json();
  }

  stop(): void {
    this.proc?.kill('SIGKILL');
  }
}

/** The admin every test signs in as, made with `paddock user add` before the
 * server first starts (as a headless deploy would). */
export const ADMIN = { login: 'e2e', password: 'e2e password, long enough' };

/** A real Paddock server on its own SQLite file, restartable on the same port,
 * with sign-in on. */
export class Paddock {
  private proc?: ChildProcess;
  private output = '';
  url = '';
  /** An API token of the admin's, for the test's own scripts. */
  token = '';
  constructor(readonly dataDir: string, readonly sandbox: 'docker' | 'local', readonly model?: Model, readonly withAdmin = true) {}

  get workspaces(): string {
    return join(this.dataDir, 'workspaces');
  }

  /** The server's process id, while it runs. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** What the server logged since it last started. */
  get log(): string {
    return this.output;
  }

  private env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: `sqlite://${join(this.dataDir, 'paddock.db')}`,
      WORKSPACE_ROOT: this.workspaces,
      PADDOCK_GIT_ROOT: join(this.dataDir, 'git'),
      PADDOCK_MASTER_KEY_FILE: join(this.dataDir, 'master.key'),
      PADDOCK_AUTH: 'on',
      // The tests' notification receivers and git servers listen on
      // loopback.
      PADDOCK_NOTIFY_PRIVATE_NETWORKS: 'true',
      PADDOCK_EGRESS_NETWORKS: '127.0.0.0/8',
      PADDOCK_SANDBOX: this.sandbox,
      RUST_LOG: 'info',
      NO_COLOR: '1',
    };
    delete env.ANTHROPIC_API_KEY;
    delete env.ANTHROPIC_AUTH_TOKEN;
    if (this.model) {
      env.ANTHROPIC_BASE_URL = this.model.url;
      env.ANTHROPIC_API_KEY = Model.key;
    }
    return env;
  }

  /** Runs `paddock ARGS` (a subcommand) on this server's database. */
  cli(args: string[], input = ''): string {
    return execFileSync(process.env.PADDOCK_BIN!, args, { env: this.env(), input, encoding: 'utf8' });
  }

  async start(addr = '127.0.0.1:0'): Promise<void> {
    const bin = process.env.PADDOCK_BIN;
    const siteRoot = process.env.PADDOCK_SITE_ROOT;
    if (!bin || !siteRoot) throw new Error('PADDOCK_BIN and PADDOCK_SITE_ROOT must be set (scripts/test does)');
    if (this.withAdmin && !existsSync(join(this.dataDir, 'paddock.db'))) {
      this.cli(['user', 'add', ADMIN.login, '--role', 'admin'], `${ADMIN.password}\n`);
    }
    this.output = '';
    const env = { ...this.env(), PADDOCK_ADDR: addr, LEPTOS_SITE_ROOT: siteRoot };
    const [proc, listening] = spawnListening(bin, [], env, (s) => { this.output += s; });
    this.proc = proc;
    this.url = await listening;
    if (this.withAdmin && !this.token) this.token = await this.createToken(ADMIN.login, ADMIN.password);
  }

  /** Signs in as a script would (a form post from the server's own origin)
   * and makes an API token. */
  async createToken(login: string, password: string): Promise<string> {
    const signin = await fetch(`${this.url}/auth/signin`, {
      method: 'POST',
      headers: { origin: this.url, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ login, password }),
      redirect: 'manual',
    });
    if (signin.status !== 303) throw new Error(`sign-in: ${signin.status} ${await signin.text()}`);
    const cookie = signin.headers.get('set-cookie')!.split(';')[0];
    const res = await fetch(`${this.url}/api/create_token`, {
      method: 'POST',
      headers: { origin: this.url, cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ name: `e2e ${randomBytes(4).toString('hex')}` }),
    });
    if (!res.ok) throw new Error(`create_token: ${res.status} ${await res.text()}`);
    return (await res.json()).secret;
  }

  /** A request to the REST API with the admin's token, as a script sends it. */
  api(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${this.token}`, ...(init.headers as Record<string, string> | undefined) },
    });
  }

  /** Stops with SIGTERM (graceful) or SIGKILL (a crash). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    await exited;
  }

  /** Restarts on the same address, as an operator would. */
  async restart(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const addr = new URL(this.url).host;
    await this.stop(signal);
    await this.start(addr);
  }
}

/** Signs `page` in through the sign-in page, as a person does. */
export async function signIn(page: Page, paddock: Paddock, login = ADMIN.login, password = ADMIN.password): Promise<void> {
  await gotoHydrated(page, `${paddock.url}/signin`);
  await page.getByLabel('Login').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${paddock.url}/`);
  await expect(page.getByTestId('account-name')).toBeVisible();
}

/** Another window of the same signed-in person (its own context, sharing
 * the browser session of `page`). */
export async function anotherWindow(browser: Browser, page: Page): Promise<Page> {
  const context = await browser.newContext({ storageState: await page.context().storageState() });
  return context.newPage();
}

export async function gotoHydrated(page: Page, url: string) {
  const response = await page.goto(url);
  await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
  return response;
}

/** Waits until the page has its live copy of the sessions list (the
 * sidebar, the attention count and the `a` shortcut read it). */
export async function sessionsLoaded(page: Page) {
  await expect(page.locator('body[data-sessions="loaded"]')).toBeAttached();
}

/** Whether a session's Docker sandbox exists. */
export function containerExists(sessionId: string): boolean {
  try {
    execFileSync('docker', ['inspect', `paddock-${sessionId}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Deletes a server's data folder, unmounting first the workspaces' own
 * filesystems in it (a server leaves them mounted when it stops). */
export function removeDataDir(dir: string): void {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point) => point && point.startsWith(`${dir}/`));
  for (const point of points) {
    try { execFileSync('umount', ['-l', point], { stdio: 'ignore' }); } catch { /* gone */ }
  }
  rmSync(dir, { recursive: true, force: true });
}

export const test = base.extend<{ sandbox: 'docker' | 'local'; scenario: Scenario | null; withAdmin: boolean; model: Model | undefined; paddock: Paddock }>({
  // Local by default: most tests are about the dashboard, not containers.
  sandbox: ['local', { option: true }],
  // What the scripted model answers, turn by turn; null: no model configured.
  scenario: [{ turns: [] }, { option: true }],
  // Whether an admin exists before the first start (false: the setup link).
  withAdmin: [true, { option: true }],
  model: async ({ scenario }, use) => {
    if (scenario === null) return use(undefined);
    const dir = mkdtempSync(join(tmpdir(), 'paddock-model-'));
    const model = new Model(scenario, dir);
    await model.start();
    await use(model);
    model.stop();
    rmSync(dir, { recursive: true, force: true });
  },
  paddock: async ({ sandbox, model, withAdmin }, use) => {
    const dir = mkdtempSync(join(tmpdir(), 'paddock-e2e-'));
    const paddock = new Paddock(dir, sandbox, model, withAdmin);
    await paddock.start();
    await use(paddock);
    await paddock.stop();
    // A failed test must not leave containers behind.
    if (sandbox === 'docker' && existsSync(paddock.workspaces)) {
      for (const id of readdirSync(paddock.workspaces)) {
        try { execFileSync('docker', ['rm', '-f', `paddock-${id}`], { stdio: 'ignore' }); } catch { /* gone */ }
      }
    }
    removeDataDir(dir);
  },
  // The test's page is signed in as the admin, through the sign-in page.
  // What it runs is the site's own: a script its policy refused (the
  // server's Content-Security-Policy, `script-src`) fails the test. (A
  // frame the policy refuses is another matter: a test of another site
  // framing Paddock expects that.)
  page: async ({ page, paddock, withAdmin }, use) => {
    const refused: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && m.text().includes('script-src')) refused.push(m.text());
    });
    if (withAdmin) await signIn(page, paddock);
    await use(page);
    expect(refused, 'scripts the page policy refused').toEqual([]);
  },
});

/** Creates a session through the REST API (the admin's token) and opens its
 * page, hydrated and live. */
export async function openNewSession(page: Page, paddock: Paddock, body: Record<string, unknown> = {}): Promise<string> {
  const id = await createSession(paddock, 'e2e', body);
  await gotoHydrated(page, `${paddock.url}/sessions/${id}`);
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  return id;
}

/** Creates a session through the REST API; its id. */
export async function createSession(paddock: Paddock, name: string, settings: Record<string, unknown> = {}): Promise<string> {
  const res = await paddock.api('/api/sessions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, ...settings }),
  });
  expect(res.status).toBe(201);
  return (await res.json()).id as string;
}

/** Queues a prompt through the REST API. */
export async function prompt(paddock: Paddock, id: string, text: string): Promise<void> {
  const res = await paddock.api(`/api/sessions/${id}/prompt`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  expect(res.status).toBe(202);
}

/** Types a prompt into the composer and sends it with Enter. */
export async function sendPrompt(page: Page, text: string): Promise<void> {
  const box = page.getByLabel('Prompt');
  await box.fill(text);
  await box.press('Enter');
}

/** A full-page screenshot kept with the test results. */
export async function snapshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(__dirname, '..', 'test-results', 'screenshots', `${name}.png`), fullPage: true });
}

export { expect };
