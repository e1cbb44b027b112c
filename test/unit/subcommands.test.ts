import { describe, expect, it } from 'vitest';
import { UsageError } from '../../lib/core/cli.ts';
import { aiddHelp, subcommandOf, SUBCOMMANDS, subcommandUsage } from '../../lib/core/subcommands.ts';
import { thrown } from './thrown.ts';

/** The script and argv `aidd NAME ...rest` runs. */
function resolve(name: string, rest: string[]): [string, string[]] {
  const subcommand = SUBCOMMANDS[name];
  if (!subcommand) throw new Error(`no subcommand ${name}`);
  return [subcommand.script, subcommand.argv(rest)];
}

describe('SUBCOMMANDS', () => {
  it('has exactly the documented subcommands', () => {
    expect(Object.keys(SUBCOMMANDS).sort()).toEqual(['build', 'cluster', 'deploy', 'env', 'exec', 'history', 'logs', 'rehearse', 'rollback', 'smoke', 'status', 'unlock']);
  });

  it('passes the words of deploy, build, smoke, env and rehearse to their script unchanged', () => {
    const rest = ['--host', 'h.example', '--dry-run', 'word', '--', '-x'];
    expect(resolve('deploy', rest)).toEqual(['ssh-deploy', rest]);
    expect(resolve('build', rest)).toEqual(['build-push', rest]);
    expect(resolve('smoke', rest)).toEqual(['smoke-test', rest]);
    expect(resolve('env', rest)).toEqual(['setup-env', rest]);
    expect(resolve('rehearse', rest)).toEqual(['rehearse', rest]);
    for (const name of ['deploy', 'build', 'smoke', 'env', 'rehearse']) expect(resolve(name, [])[1]).toEqual([]);
  });

  it('turns a leading release id of rollback into --to ID', () => {
    expect(resolve('rollback', ['20261128-100000-abc1234'])).toEqual(['ssh-deploy', ['--rollback', '--to', '20261128-100000-abc1234']]);
    expect(resolve('rollback', ['r7', '--host', 'h', '--yes'])[1]).toEqual(['--rollback', '--to', 'r7', '--host', 'h', '--yes']);
  });

  it('rolls back to the previous release without an id, and never takes a leading flag for an id', () => {
    expect(resolve('rollback', [])).toEqual(['ssh-deploy', ['--rollback']]);
    expect(resolve('rollback', ['--host', 'h', 'r7'])[1]).toEqual(['--rollback', '--host', 'h', 'r7']);
    expect(resolve('rollback', ['-n'])[1]).toEqual(['--rollback', '-n']);
    expect(resolve('rollback', ['--to', 'r3'])[1]).toEqual(['--rollback', '--to', 'r3']);
  });

  it('adds the mode flag of status, history, logs and unlock before the words', () => {
    const rest = ['--host', 'h', 'api'];
    expect(resolve('status', rest)).toEqual(['ssh-deploy', ['--status', ...rest]]);
    expect(resolve('history', rest)).toEqual(['ssh-deploy', ['--history', ...rest]]);
    expect(resolve('logs', rest)).toEqual(['ssh-deploy', ['--logs', ...rest]]);
    expect(resolve('unlock', rest)).toEqual(['ssh-deploy', ['--break-lock', ...rest]]);
    expect(resolve('status', [])[1]).toEqual(['--status']);
    expect(resolve('logs', ['-f', '--since', '10m', 'api', 'bot'])[1]).toEqual(['--logs', '-f', '--since', '10m', 'api', 'bot']);
  });

  it('takes the first word of exec as its service and leaves the rest, command included, as it is', () => {
    expect(resolve('exec', ['api', '--', 'sh'])).toEqual(['ssh-deploy', ['--exec', 'api', '--', 'sh']]);
    expect(resolve('exec', ['api', '--host', 'h', '--', 'python', '-c', 'print(1)'])[1]).toEqual(['--exec', 'api', '--host', 'h', '--', 'python', '-c', 'print(1)']);
    expect(resolve('exec', ['api'])[1]).toEqual(['--exec', 'api']);
  });

  it('refuses exec without a leading service, as a usage error', () => {
    for (const rest of [[], ['--host', 'h', 'api', '--', 'sh'], ['--', 'sh'], ['-t', 'api']]) {
      const error = thrown(() => SUBCOMMANDS.exec!.argv(rest));
      expect(error).toBeInstanceOf(UsageError);
      expect(error.exitCode).toBe(2);
      expect(error.message.startsWith('aidd exec needs a service first')).toBe(true);
    }
  });

  it('passes exec --help and --version to ssh-deploy without a service', () => {
    expect(resolve('exec', ['--help'])).toEqual(['ssh-deploy', ['--help']]);
    expect(resolve('exec', ['-h'])).toEqual(['ssh-deploy', ['-h']]);
    expect(resolve('exec', ['--version'])).toEqual(['ssh-deploy', ['--version']]);
  });
});

describe('subcommandUsage', () => {
  it('names the subcommand, the script command line it stands for, and what it does', () => {
    expect(subcommandUsage('rollback').split('\n')).toEqual([
      'aidd rollback [ID] [options]',
      '   or: npx tsx scripts/ssh-deploy.ts --rollback [--to ID] [options]',
      '',
      'Go back to the release live before the current one, or to release ID.',
    ]);
    expect(subcommandUsage('build').split('\n').slice(0, 2)).toEqual(['aidd build [options]', '   or: npx tsx scripts/build-push.ts [options]']);
  });

  it("names in the script form exactly the mode flag each subcommand adds", () => {
    for (const [name, subcommand] of Object.entries(SUBCOMMANDS)) {
      const words = name === 'exec' ? ['api'] : name === 'rollback' ? ['ID'] : [];
      const added = subcommand.argv(words).filter((word) => word.startsWith('--'));
      const named = (subcommand.scriptUsage ?? '[options]').split(' ').filter((word) => /^\[?--[a-z-]+\]?$/.test(word) && !['[-f]', '[--since', '[--tail'].includes(word));
      expect(named.map((word) => word.replace(/^\[|\]$/g, '')), name).toEqual(added);
    }
  });
});

describe('subcommandOf', () => {
  it('names the subcommand that runs each script with its own flags', () => {
    expect(subcommandOf('ssh-deploy')).toBe('deploy');
    expect(subcommandOf('build-push')).toBe('build');
    expect(subcommandOf('smoke-test')).toBe('smoke');
    expect(subcommandOf('setup-env')).toBe('env');
    expect(subcommandOf('rehearse')).toBe('rehearse');
  });

  it('throws for a script no subcommand runs', () => {
    expect(() => subcommandOf('nope')).toThrow('no aidd subcommand runs scripts/nope.ts');
    expect(() => subcommandOf('')).toThrow(/no aidd subcommand runs/);
  });
});

describe('aiddHelp', () => {
  it('lists every subcommand with its usage and summary, and the global options', () => {
    const text = aiddHelp();
    expect(text.startsWith('Usage: aidd COMMAND [options]\n')).toBe(true);
    const lines = text.split('\n');
    for (const [name, subcommand] of Object.entries(SUBCOMMANDS)) {
      const line = lines.find((candidate) => candidate.startsWith(`  ${name} ${subcommand.usage}`));
      expect(line, name).toBeDefined();
      expect(line!.endsWith(subcommand.summary), name).toBe(true);
    }
    expect(text).toContain('--version');
    expect(text).toContain('-h, --help');
  });
});
