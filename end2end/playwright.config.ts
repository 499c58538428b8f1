import { defineConfig } from '@playwright/test';

// Debian's Chromium, never a downloaded browser. Each test starts its own
// Paddock server (see tests/fixtures.ts), so tests can run in parallel.
export default defineConfig({
  testDir: './tests',
  outputDir: './test-results',
  // The slowest test but the twenty tabs' (which sets its own) takes 26 s
  // in CI, over 50 s on a CI machine twice as slow: this leaves twice that.
  // What a test checks is never how long it took.
  timeout: 120_000,
  expect: { timeout: 10_000 },
  workers: 2,
  // One retry in CI, reported as "flaky" in the output: a timing fault on a
  // loaded 2-core machine shows there without failing the run.
  retries: process.env.CI ? 1 : 0,
  reporter: [['list']],
  use: {
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
});
