import { test, expect, openNewSession } from '../tests/fixtures';

// Keystroke echo in the session page's terminal, as its user sees it: from
// the browser's keydown to the echoed character in xterm.js's rows (the
// WebSocket, the server, the sandbox agent, the pseudo-terminal and the
// shell's echo, and back, then xterm.js drawing it), measured in the page,
// KEYS keystrokes one after another into a Docker sandbox's bash; and the
// same without xterm.js, on a WebSocket of the page's own to a second
// terminal (a byte sent to its echo received). Result: one JSON line on
// stdout.

const KEYS = 300;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

test.use({ sandbox: 'docker' });

test('terminal keystroke echo', async ({ page, paddock }) => {
  await openNewSession(page, paddock, { name: 'echo', permission_mode: 'ask' });
  await page.getByTestId('tab-terminal').click();
  await page.getByTestId('new-terminal').click();
  const screen = page.getByTestId('terminal-screen');
  await expect(screen.locator('.xterm-rows')).toContainText('/workspace$');
  await page.evaluate(() => {
    const w = window as any;
    w.echoes = [] as number[];
    let pressed = 0;
    let seen = 0;
    document.addEventListener('keydown', () => (pressed = performance.now()), true);
    const rows = document.querySelector('[data-testid="terminal-screen"] .xterm-rows')!;
    new MutationObserver(() => {
      const count = (rows.textContent!.match(/x/g) || []).length;
      if (count > seen) {
        seen = count;
        w.echoes.push(performance.now() - pressed);
      }
    }).observe(rows, { childList: true, subtree: true, characterData: true });
  });
  for (let i = 1; i <= KEYS; i++) {
    await page.keyboard.press('x');
    await page.waitForFunction((n) => (window as any).echoes.length >= n, i);
  }
  const echoes: number[] = (await page.evaluate(() => (window as any).echoes)).sort((a: number, b: number) => a - b);
  const id = page.url().split('/').pop()!.split('?')[0];
  const socket: number[] = (
    await page.evaluate(
      ({ id, keys }) =>
        new Promise<number[]>((resolve, reject) => {
          const ws = new WebSocket(`ws://${location.host}/api/sessions/${id}/terminal?rows=24&cols=80`);
          ws.binaryType = 'arraybuffer';
          const times: number[] = [];
          let sent = 0;
          let ready = false;
          const next = () => {
            sent = performance.now();
            ws.send(new TextEncoder().encode('y'));
          };
          ws.onmessage = (m) => {
            if (typeof m.data === 'string') return;
            const text = new TextDecoder().decode(m.data);
            if (!ready) {
              if (text.includes('$ ')) {
                ready = true;
                next();
              }
              return;
            }
            if (!text.includes('y')) return;
            times.push(performance.now() - sent);
            if (times.length === keys) {
              ws.close();
              resolve(times);
            } else next();
          };
          ws.onclose = () => times.length < keys && reject(new Error('closed early'));
        }),
      { id, keys: KEYS },
    )
  ).sort((a, b) => a - b);
  const ms = (n: number) => Number(n.toFixed(1));
  const row = {
    keystrokes: echoes.length,
    drawn_p50_ms: ms(percentile(echoes, 50)),
    drawn_p99_ms: ms(percentile(echoes, 99)),
    socket_p50_ms: ms(percentile(socket, 50)),
    socket_p99_ms: ms(percentile(socket, 99)),
  };
  console.log(JSON.stringify(row));
});
