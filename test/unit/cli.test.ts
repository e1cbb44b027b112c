import { afterEach, describe, expect, it } from 'vitest';
import { helpText, isInteractive, parseCli, parseSeconds, requireNode, UsageError, type ScriptSpec, type Values } from '../../lib/core/cli.ts';
import { thrown } from './thrown.ts';

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

describe('parseCli positionals and --version', () => {
  const withWords: ScriptSpec = { ...spec, name: 'words', positionals: '[SERVICE...]' };

  it('refuses words after the flags when the script takes none', () => {
    for (const argv of [['extra'], ['--host', 'h', 'extra'], ['--', 'extra']]) {
      const error = thrown(() => parseCli(spec, argv));
      expect(error).toBeInstanceOf(UsageError);
      expect(error.exitCode).toBe(2);
      expect(error.message.startsWith("Unexpected argument 'extra'"), error.message).toBe(true);
      expect(error.message.endsWith('; see --help')).toBe(true);
    }
  });

  it('puts the words in _ when the script takes them, flags anywhere, and everything after -- as words', () => {
    expect(parseCli(withWords, ['api', '--json', 'bot', '--host', 'h'])).toMatchObject({ _: ['api', 'bot'], json: true, host: 'h' });
    expect(parseCli(withWords, ['--json'])).toMatchObject({ _: [], json: true });
    expect(parseCli(withWords, ['api', '--', 'sh', '-c', '--json'])).toMatchObject({ _: ['api', 'sh', '-c', '--json'] });
    expect((parseCli(withWords, ['api', '--', 'sh', '-c', '--json']) as Values).json).toBeUndefined();
    expect(() => parseCli(withWords, ['api', '--hots'])).toThrow(UsageError);
  });

  it('returns version for --version, before checking anything else', () => {
    expect(parseCli(spec, ['--version'])).toBe('version');
    expect(parseCli(withWords, ['api', '--version'])).toBe('version');
    expect(parseCli(spec, ['--help', '--version'])).toBe('help');
  });

  it('shows the words in the usage line and lists --version', () => {
    expect(helpText(withWords).split('\n')[0]).toBe('Usage: npx tsx scripts/words.ts [options] [SERVICE...]');
    expect(helpText(spec).split('\n')[0]).toBe('Usage: npx tsx scripts/example.ts [options]');
    // How `aidd NAME` invoked it, when it did.
    expect(helpText(spec, 'aidd example [options]\n   or: npx tsx scripts/example.ts [options]').split('\n').slice(0, 2)).toEqual(['Usage: aidd example [options]', '   or: npx tsx scripts/example.ts [options]']);
    for (const text of [helpText(spec), helpText(withWords)]) {
      expect(text).toMatch(/^ {6}--version +Show the toolkit version\.$/m);
      expect(text).toMatch(/^ {2}-h, --help +Show this help\.$/m);
    }
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
