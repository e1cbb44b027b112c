import { describe, expect, it } from 'vitest';
import { describe as describeCommand, Runner } from '../../lib/core/exec.ts';
import { createLogger } from '../../lib/core/log.ts';
import { redact, Secret } from '../../lib/core/secrets.ts';

const quiet = createLogger({ prefix: 'test', quiet: true });

describe('secrets', () => {
  it('redacts every registered secret value, never the surrounding text', () => {
    const token = new Secret('ghp_example_token_value');
    expect(redact('login with ghp_example_token_value done')).toBe('login with [REDACTED] done');
    expect(String(token)).toBe('[REDACTED]');
    expect(JSON.stringify({ token })).toBe('{"token":"[REDACTED]"}');
    expect(token.reveal()).toBe('ghp_example_token_value');
  });
});

describe('command description', () => {
  it('quotes arguments for the shell and marks secret stdin', () => {
    const text = describeCommand({ argv: ['docker', 'login', 'ghcr.io', '--password-stdin', 'a b'], input: new Secret('pw-1234567') });
    expect(text).toBe(`docker login ghcr.io --password-stdin 'a b' <<< [REDACTED]`);
  });

  it('shows the variables set for a command, secret-named ones redacted', () => {
    expect(describeCommand({ argv: ['docker', 'build', '.'], env: { DOCKER_BUILDKIT: '1', REGISTRY_TOKEN: 'abc123456', GONE: undefined } })).toBe(
      'DOCKER_BUILDKIT=1 REGISTRY_TOKEN=[REDACTED] docker build .',
    );
  });

  it('redacts a secret that ended up inside an argument', () => {
    new Secret('s3cr3t-value');
    expect(describeCommand({ argv: ['echo', 'x=s3cr3t-value'] })).toBe('echo x=[REDACTED]');
  });
});

describe('runner', () => {
  it('runs a command, feeds stdin and reports the exit code', async () => {
    const runner = new Runner({ logger: quiet });
    const result = await runner.attempt({ argv: ['sh', '-c', 'cat; exit 3'], input: 'hello' });
    expect(result).toMatchObject({ exitCode: 3, stdout: 'hello', skipped: false });
  });

  it('throws a one-line error naming the command when run() fails', async () => {
    const runner = new Runner({ logger: quiet });
    await expect(runner.run({ argv: ['sh', '-c', 'echo boom >&2; exit 1'] })).rejects.toThrow(/^sh -c .* failed: boom$/);
  });

  it('in dry-run skips commands that change things but runs read-only ones', async () => {
    const runner = new Runner({ logger: quiet, dryRun: true });
    const write = await runner.attempt({ argv: ['sh', '-c', 'echo changed'] });
    const read = await runner.attempt({ argv: ['sh', '-c', 'echo state'], readOnly: true });
    expect(write).toMatchObject({ skipped: true, stdout: '' });
    expect(read).toMatchObject({ skipped: false, stdout: 'state\n' });
    expect(runner.plan).toEqual([`sh -c 'echo changed'`, `sh -c 'echo state'`]);
  });

  it('kills a command that outlives its timeout', async () => {
    const runner = new Runner({ logger: quiet });
    const started = Date.now();
    const result = await runner.attempt({ argv: ['sleep', '10'], timeoutMs: 200 });
    expect(result.exitCode).toBe(143);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('streamed output', () => {
  it('shows each line once it is whole, even when it arrives in pieces, and the last one without a newline', async () => {
    const lines: string[] = [];
    const logger = { step: () => undefined, task: () => () => undefined, info: (message: string) => void lines.push(message), warn: () => undefined };
    const runner = new Runner({ logger });
    const result = await runner.run({ argv: ['sh', '-c', 'printf "ab"; sleep 0.2; printf "c\\nd"; sleep 0.2; printf "e"'], stream: true, timeoutMs: 10_000 });
    expect(result.stdout).toBe('abc\nde');
    expect(lines).toEqual(['  | abc', '  | de']);
  });

  it('prefixes each line with the command\'s title, so side-by-side builds can be told apart', async () => {
    const lines: string[] = [];
    const logger = { step: () => undefined, task: () => () => undefined, info: (message: string) => void lines.push(message), warn: () => undefined };
    await new Runner({ logger }).run({ argv: ['sh', '-c', 'echo one; echo two'], stream: true, title: 'building api', timeoutMs: 10_000 });
    expect(lines).toEqual(['  building api | one', '  building api | two']);
  });
});
