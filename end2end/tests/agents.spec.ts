import { test, expect, gotoHydrated } from './fixtures';

test('an agent made in the dashboard, edited to a new version, starts a session with its settings', async ({ page, paddock }) => {
  await gotoHydrated(page, `${paddock.url}/agents`);
  await expect(page.getByTestId('agents-empty')).toBeVisible();
  const form = page.getByTestId('agent-form');
  await form.getByLabel('Name').fill('Careful reviewer');
  await form.getByLabel('Description').fill('Reads, never writes.');
  await form.getByLabel('Model').fill('claude-haiku-4-5');
  await form.getByLabel('Permissions').selectOption('read-only');
  await form.getByTestId('agent-save').click();

  await expect(page.getByTestId('agent-title')).toHaveText('Careful reviewer');
  await expect(page.getByTestId('agent-version')).toHaveText('version 1');
  const edit = page.getByTestId('agent-edit-form');
  await expect(edit.getByLabel('Model')).toHaveValue('claude-haiku-4-5');
  await edit.getByLabel('Model').fill('claude-opus-4-5');
  await edit.getByTestId('agent-edit-save').click();
  await expect(page.getByTestId('agent-version')).toHaveText('version 2');
  await expect(page.getByTestId('agent-version-row')).toHaveCount(2);
  // A refused save says why and keeps what was typed.
  await edit.getByLabel('Model').fill('claude-sonnet-4-5');
  await edit.getByText('More options').click();
  await edit.getByLabel('Environment variables').fill('PATH=/evil');
  await edit.getByTestId('agent-edit-save').click();
  await expect(page.getByText('PATH is the sandbox\'s own')).toBeVisible();
  await expect(edit.getByLabel('Model')).toHaveValue('claude-sonnet-4-5');
  await expect(edit.getByLabel('Environment variables')).toHaveValue('PATH=/evil');
  await expect(page.getByTestId('agent-version')).toHaveText('version 2');

  await page.getByTestId('start-from-agent').click();
  await expect(page.getByLabel('Agent')).toHaveValue(/[0-9a-f-]{36}/);
  await expect(page.getByTestId('session-settings')).toBeHidden();
  await page.getByRole('button', { name: 'Create session' }).click();
  await expect(page.getByTestId('session-title')).toHaveText('Careful reviewer');
  await expect(page.getByText('claude-opus-4-5')).toBeAttached();
  const id = page.url().split('/').pop();
  const session = await (await paddock.api(`/api/sessions/${id}`)).json();
  expect(session.template.version).toBe(2);
  expect(session.permission_mode).toBe('read-only');

  await gotoHydrated(page, `${paddock.url}/agents`);
  await expect(page.getByTestId('agent-row')).toHaveCount(1);
  await expect(page.getByTestId('agent-meta')).toContainText('v2');
});

test('saving an agent in the form keeps what the form cannot show as it is', async ({ page, paddock }) => {
  const key = '-----BEGIN KEY-----\nabc\n-----END KEY-----';
  const made = await paddock.api('/api/templates', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'Keeper',
      session: {
        name: 'Nightly review',
        env: [{ name: 'KEY', value: key }, { name: 'MODE', value: 'fast' }],
        mcp_servers: [{ name: 'tools', command: '/opt/my tools/server', args: ['--flag'] }],
        skills: [{ markdown: '---\nname: old-name\ndescription: Checks.\n---\nCheck.\n', files: [{ path: 'check.sh', content: 'true\n' }] }],
      },
    }),
  });
  expect(made.status).toBe(201);
  const { id } = await made.json();
  await gotoHydrated(page, `${paddock.url}/agents/${id}`);
  const edit = page.getByTestId('agent-edit-form');
  await edit.getByText('More options').click();
  // A value of several lines is shown between NAME<<END and END.
  await expect(edit.getByLabel('Environment variables')).toHaveValue(`KEY<<END\n${key}\nEND\nMODE=fast`);
  await edit.getByLabel('Description').fill('Keeps its settings.');
  await edit.getByTestId('agent-edit-save').click();
  await expect(page.getByTestId('agent-version')).toHaveText('version 2');
  const saved = await (await paddock.api(`/api/templates/${id}`)).json();
  expect(saved.description).toBe('Keeps its settings.');
  expect(saved.session.name).toBe('Nightly review');
  expect(saved.session.env).toEqual([{ name: 'KEY', value: key }, { name: 'MODE', value: 'fast' }]);
  expect(saved.session.mcp_servers[0].command).toBe('/opt/my tools/server');
  expect(saved.session.mcp_servers[0].args).toEqual(['--flag']);
  // The model was not set: it stays unset (the server's default), not pinned.
  expect(saved.session.model ?? null).toBeNull();

  // Renaming a skill in its SKILL.md changes that skill, files kept.
  const skill = page.getByTestId('skill');
  await skill.getByText('Edit SKILL.md').click();
  await skill.locator('textarea').fill('---\nname: new-name\ndescription: Checks.\n---\nCheck.\n');
  await skill.getByRole('button', { name: 'Save skill' }).click();
  await expect(page.getByTestId('agent-version')).toHaveText('version 3');
  await expect(page.getByTestId('skill-name')).toHaveText(['new-name']);
  const renamed = await (await paddock.api(`/api/templates/${id}`)).json();
  expect(renamed.session.skills.length).toBe(1);
  expect(renamed.session.skills[0].files[0].path).toBe('check.sh');
});
