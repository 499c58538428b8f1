import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// The browser benchmarks (bench/): `npx playwright test -c bench.config.ts`,
// with the same environment as the tests (scripts/bench-browser sets it). Not
// part of the test suite: they measure and assert no timing.
export default defineConfig({
  ...base,
  testDir: './bench',
  testMatch: '**/*.bench.ts',
  workers: 1,
  retries: 0,
  timeout: 600_000,
});
