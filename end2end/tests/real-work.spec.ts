import { test, expect, gotoHydrated, sendPrompt, snapshot } from './fixtures';
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

/** The paths and contents of a tar (ustar/GNU; long names through the
 * ustar prefix field). */
function untar(tar: Buffer): Map<string, string> {
  const files = new Map<string, string>();
  const text = (b: Buffer) => b.toString('utf8').replace(/\0.*$/s, '');
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    const name = text(header.subarray(0, 100));
    if (!name) break;
    const prefix = text(header.subarray(345, 500));
    const size = parseInt(text(header.subarray(124, 136)).trim() || '0', 8);
    files.set(prefix ? `${prefix}/${name}` : name, tar.subarray(at + 512, at + 512 + size).toString('utf8'));
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, {
    cwd,
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 'E2E', GIT_AUTHOR_EMAIL: 'e2e@example.invalid', GIT_COMMITTER_NAME: 'E2E', GIT_COMMITTER_EMAIL: 'e2e@example.invalid' },
    encoding: 'utf8',
  });

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** A real git server (`git daemon`, the git:// protocol) serving one
 * repository, app.git, whose main holds a README. */
async function gitDaemon(): Promise<{ url: string; proc: ChildProcess; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'paddock-git-'));
  const work = join(dir, 'work');
  mkdirSync(work);
  git(work, 'init', '-q', '-b', 'main');
  writeFileSync(join(work, 'README.md'), '# App\nold line\n');
  git(work, 'add', '-A');
  git(work, 'commit', '-q', '-m', 'The start');
  git(dir, 'clone', '-q', '--bare', work, 'app.git');
  const port = await freePort();
  const proc = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${dir}`, '--listen=127.0.0.1', `--port=${port}`, dir], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `git://127.0.0.1:${port}/app.git`, proc, dir };
}

test.describe('an agent on a repository', () => {
  test.use({
    scenario: { turns: [
      { expect: { system_contains: 'Keep the README short.' },
        reply: [{ tool_use: { name: 'edit_file', input: { path: 'README.md', old_string: 'old line', new_string: 'new line' } } }] },
      { reply: 'Edited the README.' },
    ] },
  });

  test('is made in the dashboard, works on a clone, and its changes are reviewed and downloaded', async ({ page, paddock }) => {
    const server = await gitDaemon();
    try {
      await gotoHydrated(page, `${paddock.url}/agents`);
      const form = page.getByTestId('agent-form');
      await form.getByLabel('Name').fill('README editor');
      await form.getByLabel('Permissions').selectOption('auto');
      await form.getByLabel('Git repository').fill(server.url);
      await form.getByLabel('Instructions').fill('Keep the README short.');
      await form.getByTestId('agent-save').click();
      await expect(page.getByTestId('agent-version')).toHaveText('version 1');

      // A skill, written in the dashboard: a new version.
      const skills = page.getByTestId('skills');
      await skills.getByTestId('new-skill').locator('summary').click();
      await skills.getByLabel('SKILL.md').fill('---\nname: readme-style\ndescription: How READMEs are written here.\n---\nOne line per fact.\n');
      await skills.getByTestId('save-skill').click();
      await expect(page.getByTestId('agent-version')).toHaveText('version 2');
      await expect(skills.getByTestId('skill-name')).toHaveText('readme-style');

      await page.getByTestId('start-from-agent').click();
      // The agent is chosen once the form has loaded the list.
      await expect(page.getByLabel('Agent')).toHaveValue(/[0-9a-f-]{36}/);
      await expect(page.getByTestId('session-settings')).toBeHidden();
      await page.getByRole('button', { name: 'Create session' }).click();
      await expect(page.getByTestId('session-title')).toHaveText('README editor');
      await expect(page.getByTestId('connection')).toHaveAttribute('data-state', 'live');
      await expect(page.getByTestId('workspace-event')).toContainText('cloned git://');
      await sendPrompt(page, 'Update the README');
      await expect(page.getByText('Edited the README.')).toBeVisible();

      await page.getByTestId('tab-changes').click();
      const changed = page.getByTestId('changed-file');
      await expect(changed).toHaveCount(1);
      await expect(changed).toHaveAttribute('data-kind', 'modified');
      await changed.getByRole('link', { name: 'README.md' }).click();
      await expect(page.getByTestId('diff-text')).toContainText('-old line');
      await expect(page.getByTestId('diff-text')).toContainText('+new line');
      await expect(page.getByTestId('changes-branch')).toContainText('paddock/');
      await snapshot(page, 'changes-view');

      // Committed by the person, on the session's branch of the server's repository.
      await page.getByLabel('Commit every change to the branch').fill('Say new things');
      await page.getByTestId('commit').click();
      await expect(page.getByTestId('changes-head')).toBeVisible();
      const id = page.url().split('/').pop()!.split('?')[0];
      const log = git(join(paddock.dataDir, 'git', id), 'log', '--format=%an %s', '-1');
      const name = (await page.getByTestId('account-name').innerText()).split('\n')[0].replace(/admin$/, '').trim();
      expect(log.trim()).toBe(`${name} Say new things`);
      // A push refused (this git daemon takes none) says why, and leaves
      // the next commit's message as typed.
      const message = page.getByLabel('Commit every change to the branch');
      await message.fill('Next, a smaller README');
      await page.getByTestId('push').click();
      await expect(page.getByTestId('push-form').getByRole('alert')).toBeVisible();
      await expect(message).toHaveValue('Next, a smaller README');

      await page.getByTestId('tab-files').click();
      const download = page.waitForEvent('download');
      await page.getByTestId('download-archive').click();
      const archive = untar(gunzipSync(readFileSync(await (await download).path())));
      expect(archive.get('README-editor/README.md')).toBe('# App\nnew line\n');
      expect(archive.get('README-editor/.claude/CLAUDE.md')).toBe('Keep the README short.');
      expect(archive.get('README-editor/.claude/skills/readme-style/SKILL.md')).toContain('One line per fact.');
    } finally {
      server.proc.kill();
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
});
