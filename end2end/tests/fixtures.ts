import { test as base, expect, Page } from '@playwright/test';
import { spawn, ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A real Paddock server on its own SQLite file, restartable on the same port. */
export class Paddock {
  private proc?: ChildProcess;
  private output = '';
  url = '';
  constructor(readonly dataDir: string, readonly sandbox: 'docker' | 'local') {}

  get workspaces(): string {
    return join(this.dataDir, 'workspaces');
  }

  async start(addr = '127.0.0.1:0'): Promise<void> {
    const bin = process.env.PADDOCK_BIN;
    const siteRoot = process.env.PADDOCK_SITE_ROOT;
    if (!bin || !siteRoot) throw new Error('PADDOCK_BIN and PADDOCK_SITE_ROOT must be set (scripts/test does)');
    this.output = '';
    this.proc = spawn(bin, [], {
      env: {
        ...process.env,
        PADDOCK_ADDR: addr,
        DATABASE_URL: `sqlite://${join(this.dataDir, 'paddock.db')}`,
        WORKSPACE_ROOT: this.workspaces,
        PADDOCK_SANDBOX: this.sandbox,
        LEPTOS_SITE_ROOT: siteRoot,
        RUST_LOG: 'info',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const listening = new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        this.output += chunk.toString();
        const m = this.output.match(/listening on (http:\/\/\S+)/);
        if (m) resolve(m[1]);
      };
      this.proc!.stdout!.on('data', onData);
      this.proc!.stderr!.on('data', onData);
      this.proc!.on('exit', (code) => reject(new Error(`paddock exited with ${code}:\n${this.output}`)));
      setTimeout(() => reject(new Error(`paddock did not start:\n${this.output}`)), 20_000);
    });
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

export const test = base.extend<{ sandbox: 'docker' | 'local'; paddock: Paddock }>({
  // Local by default: most tests are about the dashboard, not containers.
  sandbox: ['local', { option: true }],
  paddock: async ({ sandbox }, use) => {
    const dir = mkdtempSync(join(tmpdir(), 'paddock-e2e-'));
    const paddock = new Paddock(dir, sandbox);
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

export { expect };
