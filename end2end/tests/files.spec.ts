import { test, expect, gotoHydrated, openNewSession, sendPrompt, snapshot } from './fixtures';
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

/** The paths and contents of a tar (ustar/GNU, short names). */
function untar(tar: Buffer): Map<string, string> {
  const files = new Map<string, string>();
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    if (!name) break;
    const size = parseInt(header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    files.set(name, tar.subarray(at + 512, at + 512 + size).toString('utf8'));
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

test.describe('the agent\'s files', () => {
  test.use({
    scenario: { turns: [
      { reply: [
        { tool_use: { name: 'write_file', input: { path: 'src/hello.py', content: 'def hello():\n    return "<hi>"\n' } } },
      ] },
      { reply: 'Wrote src/hello.py.' },
    ] },
  });

  test('are browsed, shown highlighted and downloaded, one by one and all together', async ({ page, paddock }) => {
    const id = await openNewSession(page, paddock, { name: 'Files demo', permission_mode: 'auto' });
    await page.getByTestId('tab-files').click();
    await expect(page.getByTestId('files-empty')).toBeVisible();
    await page.getByTestId('tab-transcript').click();
    await sendPrompt(page, 'Write src/hello.py');
    await expect(page.getByText('Wrote src/hello.py.')).toBeVisible();

    await page.getByTestId('tab-files').click();
    await expect(page).toHaveURL(`${paddock.url}/sessions/${id}?view=files`);
    await page.getByTestId('file-list').getByRole('link', { name: 'src/' }).click();
    await expect(page.getByTestId('breadcrumbs')).toContainText('src');
    await page.getByTestId('file-list').getByRole('link', { name: 'hello.py', exact: true }).click();
    const content = page.getByTestId('file-content');
    await expect(content).toContainText('def hello():');
    await expect(content).toContainText('return "<hi>"');
    // Highlighted: the keyword and the string are marked up.
    await expect(content.locator('span').first()).toBeAttached();
    await snapshot(page, 'files-view');

    // A reload keeps the place (it is in the address).
    await gotoHydrated(page, page.url());
    await expect(page.getByTestId('file-path')).toHaveText('src/hello.py');

    const one = page.waitForEvent('download');
    await page.getByTestId('file-view').getByRole('link', { name: 'Download' }).click();
    const file = await one;
    expect(file.suggestedFilename()).toBe('hello.py');
    expect(readFileSync(await file.path())).toEqual(Buffer.from('def hello():\n    return "<hi>"\n'));

    const all = page.waitForEvent('download');
    await page.getByTestId('download-archive').click();
    const archive = await all;
    expect(archive.suggestedFilename()).toBe('Files-demo.tar.gz');
    const files = untar(gunzipSync(readFileSync(await archive.path())));
    expect([...files.keys()].sort()).toEqual(['Files-demo/src/', 'Files-demo/src/hello.py']);
    expect(files.get('Files-demo/src/hello.py')).toBe('def hello():\n    return "<hi>"\n');
  });
});

test('files are uploaded by choosing them and by dropping them on the form', async ({ page, paddock }) => {
  const id = await openNewSession(page, paddock, { name: 'uploads' });
  await page.getByTestId('tab-files').click();
  // Sent by the page, which stays as it is (its terminals open, a prompt
  // being typed): not posted and loaded again.
  await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
  await page.evaluate(() => { (window as any).keptFromBefore = true; });
  await page.getByTestId('upload-input').setInputFiles({ name: 'notes.md', mimeType: 'text/markdown', buffer: Buffer.from('# Notes\n') });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await expect(page.getByTestId('file-list').getByRole('link', { name: 'notes.md', exact: true })).toBeVisible();
  expect(readFileSync(join(paddock.workspaces, id, 'notes.md'), 'utf8')).toBe('# Notes\n');
  expect(await page.evaluate(() => (window as any).keptFromBefore)).toBe(true);

  // Into a folder, by drag and drop.
  await page.getByTestId('upload-input').setInputFiles({ name: 'seed.txt', mimeType: 'text/plain', buffer: Buffer.from('seed') });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await expect(page.getByTestId('file-list').getByRole('link', { name: 'seed.txt', exact: true })).toBeVisible();
  await expect(page.locator('body[data-hydrated="true"]')).toBeAttached();
  const dropped = await page.evaluateHandle(() => {
    const data = new DataTransfer();
    data.items.add(new File(['dropped bytes'], 'dropped.txt', { type: 'text/plain' }));
    return data;
  });
  await page.getByTestId('upload-form').dispatchEvent('dragover', { dataTransfer: dropped });
  await page.getByTestId('upload-form').dispatchEvent('drop', { dataTransfer: dropped });
  await expect(page.getByTestId('file-list').getByRole('link', { name: 'dropped.txt', exact: true })).toBeVisible();
  expect(readFileSync(join(paddock.workspaces, id, 'dropped.txt'), 'utf8')).toBe('dropped bytes');

  // Deleted once asked again: kept on "Keep", gone on "Delete".
  expect(await page.evaluate(() => (window as any).keptFromBefore)).toBe(true);
  const seed = page.getByTestId('file-entry').filter({ hasText: 'seed.txt' });
  await seed.getByRole('button', { name: 'Delete seed.txt' }).click();
  await expect(seed.getByTestId('confirm-delete')).toContainText('Delete seed.txt?');
  await seed.getByRole('button', { name: 'Keep' }).click();
  await expect(seed.getByTestId('confirm-delete')).toHaveCount(0);
  expect(existsSync(join(paddock.workspaces, id, 'seed.txt'))).toBe(true);
  await seed.getByRole('button', { name: 'Delete seed.txt' }).click();
  await seed.getByTestId('confirm-delete-yes').click();
  await expect(page.getByTestId('file-list').getByRole('link', { name: 'seed.txt', exact: true })).toHaveCount(0);
  expect(existsSync(join(paddock.workspaces, id, 'seed.txt'))).toBe(false);
  await expect(page.getByTestId('file-list').getByRole('link', { name: 'dropped.txt', exact: true })).toBeVisible();

  // A name that leaves the workspace is refused on the page, nothing written.
  const res = await page.request.post(`${paddock.url}/api/sessions/${id}/files`, {
    headers: { origin: paddock.url, accept: 'text/html' },
    multipart: { dir: '../..', file: { name: 'evil.txt', mimeType: 'text/plain', buffer: Buffer.from('x') } },
    maxRedirects: 0,
  });
  expect(res.status()).toBe(303);
  await gotoHydrated(page, `${paddock.url}${res.headers()['location']}`);
  await expect(page.getByTestId('files')).toContainText('leaves the workspace');
  expect(existsSync(join(paddock.workspaces, 'evil.txt'))).toBe(false);
  expect(existsSync(join(paddock.dataDir, 'evil.txt'))).toBe(false);
});

test('a disk limit set in the form holds the workspace: its use shown, an upload that does not fit refused', async ({ page, paddock }) => {
  const ready = await (await fetch(`${paddock.url}/readyz`)).json();
  expect(ready.sandbox.disk_limits, 'this host holds disk limits (root, loop devices)').toBe('on');
  await gotoHydrated(page, paddock.url);
  await page.getByLabel('Name').fill('Small disk');
  await page.getByText('More options').click();
  await page.getByLabel('Disk (MiB)').fill('16');
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByTestId('session-title')).toHaveText('Small disk');
  const id = page.url().split('/').pop()!;
  expect((await (await paddock.api(`/api/sessions/${id}`)).json()).limits).toEqual({ disk_mb: 16 });

  await page.getByTestId('tab-files').click();
  const disk = page.getByTestId('disk-use');
  await expect(disk).toHaveText(/^Disk: [\d.]+ KiB of 1\d\.\d MiB$/);
  await expect(disk).toHaveAttribute('data-full', 'false');

  // 20 MiB into 16: refused in the page's words, nothing written.
  await page.getByTestId('upload-input').setInputFiles({ name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(20 << 20, 7) });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await expect(page.getByTestId('files')).toContainText('the workspace is full');
  expect(existsSync(join(paddock.workspaces, id, 'big.bin'))).toBe(false);

  // 13 MiB fits, and the panel says it is nearly full.
  await page.getByTestId('upload-input').setInputFiles({ name: 'fits.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(13 << 20, 7) });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await expect(page.getByTestId('file-list').getByRole('link', { name: 'fits.bin', exact: true })).toBeVisible();
  await expect(disk).toHaveAttribute('data-full', 'true');
  await expect(disk).toHaveText(/^Disk: 13\.\d MiB of 1\d\.\d MiB$/);
});

test.describe('a workspace changing in a Docker sandbox', () => {
  test.use({
    sandbox: 'docker',
    scenario: { turns: [
      { reply: [
        { tool_use: { name: 'bash', input: { command: 'sleep 2; echo live > live.txt; mkdir -p out; echo deep > out/deep.txt; sleep 8' } } },
      ] },
      { reply: 'Done waiting.' },
    ] },
  });

  test('shows in the Files view as it happens, mid-turn', async ({ page, paddock }) => {
    await page.setViewportSize({ width: 1600, height: 900 });
    const id = await openNewSession(page, paddock, { name: 'live files', permission_mode: 'auto' });
    const panel = page.getByTestId('workspace-panel');
    await expect(panel.getByTestId('files-empty')).toBeVisible();
    await sendPrompt(page, 'Make files slowly');
    const badge = page.getByTestId('session-title').locator('xpath=ancestor::header[1]').locator('[data-status]').first();
    await expect(badge).toHaveAttribute('data-status', 'running');
    // The file appears while the command still runs (it sleeps 8 s more).
    await expect(panel.getByTestId('file-list').getByRole('link', { name: 'live.txt', exact: true })).toBeVisible({ timeout: 7000 });
    await expect(badge).toHaveAttribute('data-status', 'running');
    expect(readFileSync(join(paddock.workspaces, id, 'live.txt'), 'utf8')).toBe('live\n');
    // A folder shown follows too.
    await panel.getByTestId('file-list').getByRole('link', { name: 'out/' }).click();
    await expect(panel.getByTestId('file-list').getByRole('link', { name: 'deep.txt', exact: true })).toBeVisible();
    writeFileSync(join(paddock.workspaces, id, 'out', 'from-host.txt'), 'x');
    await expect(panel.getByTestId('file-list').getByRole('link', { name: 'from-host.txt', exact: true })).toBeVisible({ timeout: 5000 });
    await expect(badge).toHaveAttribute('data-status', 'running');
    await expect(page.getByText('Done waiting.')).toBeVisible({ timeout: 20000 });
  });
});
