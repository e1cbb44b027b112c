// Headless Chromium for tests that look at a page as a user does: Debian's chromium (installed by
// .ci/provision) driven by playwright-core, which downloads no browser of its own.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { REPO_ROOT } from '../../lib/app/target.ts';

export const CHROMIUM = process.env.AIDD_CHROMIUM ?? '/usr/bin/chromium';

/** Where screenshots are kept after the run, for a reader to look at. */
export const ARTIFACTS_DIR = path.join(REPO_ROOT, '.cache', 'artifacts');

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    // Chromium's own calls home (updates, sync, QUIC probes) are refused on a closed network: ask for none.
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return path.join(ARTIFACTS_DIR, name);
}
