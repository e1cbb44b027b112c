import { afterEach, describe, expect, it } from 'vitest';
import { helpText, isInteractive, parseCli, parseSeconds, requireNode, UsageError, type ScriptSpec } from '../../lib/core/cli.ts';

const spec: ScriptSpec = {
  name: 'example',
  summary: 'An example.',
  options: {
    host: { type: 'string', value: 'HOST', env: 'EXAMPLE_HOST', help: 'Server address.' },
    json: { type: 'boolean', help: 'JSON output.' },
    url: { type: 'string', multiple: true, help: 'URLs.' },
  },
};

afterEach(() => {
  delete process.env.EXAMPLE_HOST;
});

describe('parseCli', () => {
  it('reads flags, and falls back to the environment variable of a flag', () => {
    expect(parseCli(spec, ['--host', 'a.example', '--json'])).toMatchObject({ host: 'a.example', json: true });
    process.env.EXAMPLE_HOST = 'b.example';
    expect(parseCli(spec, [])).toMatchObject({ host: 'b.example' });
    expect(parseCli(spec, ['--host', 'c.example'])).toMatchObject({ host: 'c.example' });
  });

  it('returns help for --help and -h', () => {
    expect(parseCli(spec, ['--help'])).toBe('help');
    expect(parseCli(spec, ['-h'])).toBe('help');
  });

  it('rejects an unknown flag with a usage error pointing at --help', () => {
    expect(() => parseCli(spec, ['--hots', 'x'])).toThrow(UsageError);
    expect(() => parseCli(spec, ['--hots', 'x'])).toThrow(/--hots.*see --help/);
  });

  it('documents every option, its environment twin and the exit codes', () => {
    const text = helpText(spec);
    expect(text).toContain('--host HOST');
    expect(text).toContain('[env EXAMPLE_HOST]');
    expect(text).toContain('Exit codes: 0 ok');
  });
});

describe('parseSeconds', () => {
  it('accepts positive numbers and names the flag otherwise', () => {
    expect(parseSeconds('2.5', '--timeout', 60)).toBe(2.5);
    expect(parseSeconds(undefined, '--timeout', 60)).toBe(60);
    expect(() => parseSeconds('soon', '--timeout', 60)).toThrow('--timeout soon is not a positive number of seconds');
  });
});

describe('isInteractive', () => {
  it('is false under CI even on a terminal', () => {
    const saved = process.env.CI;
    process.env.CI = 'true';
    expect(isInteractive()).toBe(false);
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  });
});

describe('requireNode', () => {
  it('accepts Node.js 22.18 and newer', () => {
    for (const version of ['22.18.0', '22.23.3', '24.1.0', '25.0.0']) expect(() => requireNode(version)).not.toThrow();
  });

  it('refuses older ones in one line that says what to install', () => {
    for (const version of ['20.20.2', '22.17.1', '18.19.0']) {
      expect(() => requireNode(version)).toThrow(new RegExp(`^Node\\.js 22\\.18 or newer is needed, this is ${version.replace(/\./g, '\\.')}; install Node\\.js 22 LTS`));
    }
  });
});
