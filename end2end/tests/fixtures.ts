import { test as base, expect, Page } from '@playwright/test';
import { spawn, ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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

/** A real Paddock server on its own SQLite file, restartable on the same port. */
export class Paddock {
  private proc?: ChildProcess;
  private output = '';
  url = '';
  constructor(readonly dataDir: string, readonly sandbox: 'docker' | 'local', readonly model?: Model) {}

  get workspaces(): string {
    return join(this.dataDir, 'workspaces');
  }

  async start(addr = '127.0.0.1:0'): Promise<void> {
    const bin = process.env.PADDOCK_BIN;
    const siteRoot = process.env.PADDOCK_SITE_ROOT;
    if (!bin || !siteRoot) throw new Error('PADDOCK_BIN and PADDOCK_SITE_ROOT must be set (scripts/test does)');
    this.output = '';
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PADDOCK_ADDR: addr,
      DATABASE_URL: `sqlite://${join(this.dataDir, 'paddock.db')}`,
      WORKSPACE_ROOT: this.workspaces,
      PADDOCK_SANDBOX: this.sandbox,
      LEPTOS_SITE_ROOT: siteRoot,
      RUST_LOG: 'info',
      NO_COLOR: '1',
    };
    delete env.ANTHROPIC_API_KEY;
    delete env.ANTHROPIC_AUTH_TOKEN;
    if (this.model) {
      env.ANTHROPIC_BASE_URL = this.model.url;
      env.ANTHROPIC_API_KEY = Model.key;
    }
    const [proc, listening] = spawnListening(bin, [], env, (s) => { this.output += s; });
    this.proc = proc;
    this.url = await listening;
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

export async function gotoHydrated(page: Page, url: string) {
  const response = await page.goto(url);
  await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
  return response;
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

export const test = base.extend<{ sandbox: 'docker' | 'local'; scenario: Scenario | null; model: Model | undefined; paddock: Paddock }>({
  // Local by default: most tests are about the dashboard, not containers.
  sandbox: ['local', { option: true }],
  // What the scripted model answers, turn by turn; null: no model configured.
  scenario: [{ turns: [] }, { option: true }],
  model: async ({ scenario }, use) => {
    if (scenario === null) return use(undefined);
    const dir = mkdtempSync(join(tmpdir(), 'paddock-model-'));
    const model = new Model(scenario, dir);
    await model.start();
    await use(model);
    model.stop();
    rmSync(dir, { recursive: true, force: true });
  },
  paddock: async ({ sandbox, model }, use) => {
    const dir = mkdtempSync(join(tmpdir(), 'paddock-e2e-'));
    const paddock = new Paddock(dir, sandbox, model);
    await paddock.start();
    await use(paddock);
    await paddock.stop();
    // A failed test must not leave containers behind.
    if (sandbox === 'docker' && existsSync(paddock.workspaces)) {
      for (const id of readdirSync(paddock.workspaces)) {
        try { execFileSync('docker', ['rm', '-f', `paddock-${id}`], { stdio: 'ignore' }); } catch { /* gone */ }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  },
});

/** Creates a session through the REST API and opens its page, hydrated and live. */
export async function openNewSession(page: Page, paddock: Paddock, body: Record<string, unknown> = {}): Promise<string> {
  const res = await fetch(`${paddock.url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'e2e', ...body }),
  });
  if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`);
  const id = (await res.json()).id as string;
  await gotoHydrated(page, `${paddock.url}/sessions/${id}`);
  await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
  return id;
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
