import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendStepSummary, errorAnnotation, GROUP_END, groupStart, inGithubActions, markdownTable } from '../../lib/core/github-actions.ts';
import { registerSecret } from '../../lib/core/secrets.ts';
import { deploySummary } from '../../lib/deploy/summary.ts';
import { newReport } from '../../lib/deploy/engine.ts';

describe('GitHub Actions output', () => {
  it('is written only on GitHub Actions', () => {
    expect(inGithubActions({ GITHUB_ACTIONS: 'true' })).toBe(true);
    expect(inGithubActions({})).toBe(false);
    expect(inGithubActions({ GITHUB_ACTIONS: 'false' })).toBe(false);
  });

  it('keeps an annotation on one line and a title from ending it early', () => {
    expect(errorAnnotation('ssh-deploy', 'release r2 failed: 50% of\nchecks')).toBe('::error title=ssh-deploy::release r2 failed: 50%25 of%0Achecks');
    expect(errorAnnotation('a:b,c', 'x')).toBe('::error title=a%3Ab%2Cc::x');
    expect(groupStart('docker build\n--tag x')).toBe('::group::docker build%0A--tag x');
    expect(GROUP_END).toBe('::endgroup::');
  });

  it('appends the summary to $GITHUB_STEP_SUMMARY, secrets redacted, and writes nothing without it', () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'aidd-summary-')), 'summary.md');
    registerSecret('summary-secret-8472');
    appendStepSummary('### one\nsummary-secret-8472', { GITHUB_STEP_SUMMARY: file });
    appendStepSummary('### two', { GITHUB_STEP_SUMMARY: file });
    expect(readFileSync(file, 'utf8')).toBe('### one\n[REDACTED]\n\n### two\n\n');
    expect(() => appendStepSummary('### three', {})).not.toThrow();
  });

  it('escapes | and newlines in Markdown cells', () => {
    expect(markdownTable(['a', 'b'], [['x|y', 'line\nbreak']])).toBe('| a | b |\n| --- | --- |\n| x\\|y | line break |');
  });
});

describe('deploySummary', () => {
  it('shows the outcome, the images (kept or new), the checks, the steps, the error and the backup', () => {
    const text = deploySummary({
      ...newReport('deploy'),
      result: 'rolled-back',
      release: 'r3',
      previous: 'r2',
      images: { api: 'reg/me/api@sha256:aa', bot: 'reg/me/bot@sha256:bb' },
      kept: ['bot'],
      checks: [{ name: 'api health', ok: false, attempts: 3, ms: 1500, detail: 'HTTP 500' }],
      steps: [{ step: 'pull', ms: 1200 }, { step: 'switch', ms: 8400 }],
      error: 'release r3 failed: api health (HTTP 500)',
      failedStep: 'verify',
      backup: 'r3.dump',
    });
    expect(text).toBe(
      [
        '### deploy: rolled-back',
        '',
        'release `r3`, previous `r2`',
        '',
        '| service | image | container |',
        '| --- | --- | --- |',
        '| api | `reg/me/api@sha256:aa` | new |',
        '| bot | `reg/me/bot@sha256:bb` | kept (content unchanged) |',
        '',
        '| check | ok | ms | detail |',
        '| --- | --- | --- | --- |',
        '| api health | **no** | 1500 | HTTP 500 |',
        '',
        'Steps: pull 1.2 s, switch 8.4 s',
        '',
        '**release r3 failed: api health (HTTP 500)** (step: verify)',
        '',
        'Database backup taken before the migration: `backups/r3.dump` on the server',
        '',
      ].join('\n'),
    );
  });

  it('says how a run that never reached the server failed', () => {
    expect(deploySummary({ ...newReport('deploy'), error: 'failed before the deploy started: writing .env.production from the secrets failed' })).toBe(
      '### deploy: failed\n\nrelease `-`, previous `-`\n\n**failed before the deploy started: writing .env.production from the secrets failed**\n',
    );
  });
});
