// aidd logs and aidd exec: their options are checked before any connection, and the command each sends
// is safe by construction. The remote part of the ssh argv (what the server's login shell parses) runs
// here under sh with a stub docker first on PATH: every value reaches docker as one argument, unchanged,
// and none ever runs as a command.
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../lib/core/cli.ts';
import type { Command } from '../../lib/core/exec.ts';
import { checkLogsOptions, checkServices, execCommand, logsCommand, type LogsRequest } from '../../lib/deploy/operate.ts';
import { sshOptions, type SshTarget } from '../../lib/deploy/ssh.ts';
import { clearStubShell, stubCalls, stubShell } from './stub-shell.ts';
import { thrown } from './thrown.ts';

const target: SshTarget = { host: '127.0.0.1', port: 22, user: 'u', keyFile: '/k', knownHostsFile: '/kh', controlPath: '/c' };

const shell = stubShell('aidd-operate');
/** The remote command's working directory: an injected `touch NAME` would leave NAME here. */
const { markers, bin } = shell;

const CONTAINER = '0123456789ab';
// Each call's argv, NUL-separated, in a file of its own (logs runs several docker calls at once). `ps`
// answers with a container id unless AIDD_NO_CONTAINER is set; `logs` with two lines; `exec` exits AIDD_EXEC_EXIT (7 by default).
writeFileSync(
  path.join(bin, 'docker'),
  `#!/bin/bash
printf '%s\\0' "$@" > "$(mktemp "$AIDD_STUB_CALLS/call.XXXXXXXX")"
case "$1" in
  ps) [ -n "$AIDD_NO_CONTAINER" ] || echo ${CONTAINER} ;;
  logs) printf 'first line\\nsecond line\\n' ;;
  service) printf '%s.1.x@node | swarm line\\n' "\${@: -1}" ;;
  exec) exit "\${AIDD_EXEC_EXIT:-7}" ;;
esac
exit 0
`,
  { mode: 0o755 },
);

beforeEach(() => {
  clearStubShell(shell, { markers: true });
});

/** The command string the server's login shell would parse: the last element of the ssh argv. */
function remoteOf(command: Command): string {
  return command.argv.at(-1)!;
}

/** Runs the remote command as the server's shell would, with the stub docker. */
function runRemote(command: Command, env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync('sh', ['-c', remoteOf(command)], {
    cwd: markers,
    env: { ...shell.env, ...env },
    input: '',
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function filters(project: string, service: string): string[] {
  return ['--filter', `label=com.docker.compose.project=${project}`, '--filter', `label=com.docker.compose.service=${service}`, '--filter', 'label=com.docker.compose.oneoff=False'];
}

/** Each would leave a file in `markers` if a shell ever ran it as a command. */
const hostile: [string, string][] = [
  ['command substitution', '$(touch dollar)'],
  ['backticks', '`touch backtick`'],
  ['a semicolon', 'a;touch semicolon'],
  ['a single quote', "x'y"],
  ['a single quote breaking out', "x' ; touch single ; '"],
  ['a double quote', 'x"y'],
  ['a double quote breaking out', 'x" ; touch double ; "'],
  ['a space', 'a b'],
  ['a glob', '* ?'],
  ['a leading dash', '-rf'],
  ['a variable', '${HOME}'],
  ['a variable running a command', '${PWD:+$(touch variable)}'],
  ['a newline', 'x\ntouch newline'],
  ['a pipe and a redirect', 'a | touch pipe > redirect'],
  ['an ampersand', 'a & touch background'],
];

describe('checkLogsOptions', () => {
  it('accepts durations, dates and unix seconds for --since', () => {
    for (const since of ['10m', '1h30m', '90s', '1.5h', '500ms', '2026-11-28', '2026-11-28T10:00:00Z', '2026-11-28T10:00:00+02:00', '1795835888']) {
      expect(checkLogsOptions(since, undefined), since).toEqual({ since, tail: 'all' });
    }
  });

  it('refuses anything else for --since, naming the flag', () => {
    for (const since of ['yesterday', '10', '-1m', '$(reboot)', '10m;ls', '', '10m ', '2026-11-28 10:00']) {
      const error = thrown(() => checkLogsOptions(since, undefined));
      expect(error, since).toBeInstanceOf(UsageError);
      expect(error.exitCode).toBe(2);
      expect(error.message.startsWith(`--since ${JSON.stringify(since)} is not a duration`), error.message).toBe(true);
    }
  });

  it('shows the last 100 lines without --since, and all of them since a time', () => {
    expect(checkLogsOptions(undefined, undefined)).toEqual({ tail: '100' });
    expect(checkLogsOptions('10m', undefined)).toEqual({ since: '10m', tail: 'all' });
  });

  it('accepts "all" and a number of lines for --tail', () => {
    expect(checkLogsOptions(undefined, 'all')).toEqual({ tail: 'all' });
    expect(checkLogsOptions(undefined, '0')).toEqual({ tail: '0' });
    expect(checkLogsOptions(undefined, '25')).toEqual({ tail: '25' });
    expect(checkLogsOptions('1h', '500')).toEqual({ since: '1h', tail: '500' });
  });

  it('refuses anything else for --tail, naming the flag', () => {
    for (const tail of ['10x', '-5', '', 'ALL', '1e3', '5;ls']) {
      const error = thrown(() => checkLogsOptions(undefined, tail));
      expect(error, tail).toBeInstanceOf(UsageError);
      expect(error.message.startsWith(`--tail ${JSON.stringify(tail)} is not a number of lines`), error.message).toBe(true);
    }
  });
});

describe('checkServices', () => {
  const services = ['postgres', 'api', 'bot'];

  it('returns every service when none is asked, and the asked ones otherwise', () => {
    expect(checkServices('--logs', [], services)).toEqual(services);
    expect(checkServices('--logs', ['bot', 'api'], services)).toEqual(['bot', 'api']);
    expect(checkServices('--exec', ['api'], services)).toEqual(['api']);
  });

  it('refuses a service the compose file does not have, naming the flag and listing the services', () => {
    const error = thrown(() => checkServices('--logs', ['api', 'web'], services));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toBe('--logs: "web" is not a service of the compose file; its services are postgres, api, bot');
    expect(thrown(() => checkServices('--exec', ['$(reboot)'], services)).message).toBe(
      '--exec: "$(reboot)" is not a service of the compose file; its services are postgres, api, bot',
    );
  });
});

describe('execCommand', () => {
  it('refuses an empty command, saying to put it after --', () => {
    const error = thrown(() => execCommand(target, 'compose', 'p', 'api', [], false));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toBe('--exec api: no command given; put it after --, e.g. aidd exec api -- sh');
  });

  it('is an ssh call to the target over the shared options, with -t only for a terminal', () => {
    const plain = execCommand(target, 'compose', 'p', 'api', ['sh'], false);
    expect(plain.argv.slice(0, -1)).toEqual(['ssh', ...sshOptions(target), '-p', '22', 'u@127.0.0.1']);
    expect(plain.interactive).toBe(true);
    expect(plain.readOnly).toBeUndefined();
    const tty = execCommand(target, 'compose', 'p', 'api', ['sh'], true);
    expect(tty.argv.slice(0, -1)).toEqual(['ssh', ...sshOptions(target), '-t', '-p', '22', 'u@127.0.0.1']);
  });

  it('runs docker exec in the service\'s running container, without a TTY when there is no terminal', () => {
    const result = runRemote(execCommand(target, 'compose', 'myapp', 'api', ['python', 'manage.py', 'shell'], false));
    expect(result.code, result.stderr).toBe(7);
    const made = stubCalls(shell);
    expect(made).toContainEqual(['ps', '--quiet', ...filters('myapp', 'api')]);
    expect(made).toContainEqual(['exec', '--interactive', CONTAINER, 'python', 'manage.py', 'shell']);
    expect(made).toHaveLength(2);
  });

  it('asks docker for a TTY on a terminal', () => {
    const result = runRemote(execCommand(target, 'compose', 'myapp', 'api', ['sh'], true));
    expect(result.code, result.stderr).toBe(7);
    expect(stubCalls(shell)).toContainEqual(['exec', '--interactive', '--tty', CONTAINER, 'sh']);
  });

  it("exits with the command's exit code", () => {
    for (const code of ['0', '1', '3', '7', '42']) {
      expect(runRemote(execCommand(target, 'compose', 'p', 'api', ['false'], false), { AIDD_EXEC_EXIT: code }).code).toBe(Number(code));
      expect(runRemote(execCommand(target, 'compose', 'p', 'api', ['false'], true), { AIDD_EXEC_EXIT: code }).code).toBe(Number(code));
    }
  });

  it('exits 125 with one line when the service has no running container', () => {
    const result = runRemote(execCommand(target, 'compose', 'myapp', 'worker', ['sh'], false), { AIDD_NO_CONTAINER: '1' });
    expect(result.code).toBe(125);
    expect(result.stderr).toBe('service worker has no running container on the server; see aidd status\n');
    expect(stubCalls(shell)).toEqual([['ps', '--quiet', ...filters('myapp', 'worker')]]);
  });

  it.each(hostile)('never runs a project, service or command word with %s, and passes each unchanged', (_name, value) => {
    for (const tty of [false, true]) {
      clearStubShell(shell);
      const words = [value, 'echo', value, `--${value}`];
      const result = runRemote(execCommand(target, 'compose', value, value, words, tty));
      expect(readdirSync(markers)).toEqual([]);
      expect(result.code, result.stderr).toBe(7);
      const made = stubCalls(shell);
      expect(made).toContainEqual(['ps', '--quiet', ...filters(value, value)]);
      expect(made).toContainEqual(['exec', '--interactive', ...(tty ? ['--tty'] : []), CONTAINER, ...words]);
      expect(made).toHaveLength(2);
    }
  });

  it("runs docker exec in the task of a swarm service that runs on the manager, and says where to look when none does", () => {
    const result = runRemote(execCommand(target, 'swarm', 'myapp', 'api', ['sh'], false));
    expect(result.code, result.stderr).toBe(7);
    const made = stubCalls(shell);
    expect(made).toContainEqual(['ps', '--quiet', '--filter', 'label=com.docker.swarm.service.name=myapp_api']);
    expect(made).toContainEqual(['exec', '--interactive', CONTAINER, 'sh']);
    expect(made).toHaveLength(2);
    const none = runRemote(execCommand(target, 'swarm', 'myapp', 'api', ['sh'], false), { AIDD_NO_CONTAINER: '1' });
    expect(none.code).toBe(125);
    expect(none.stderr).toBe('service api has no running container on the swarm manager (exec runs there; docker service ps myapp_api shows where its tasks run)\n');
  });

  it.each(hostile)('never runs a swarm project, service or command word with %s', (_name, value) => {
    const result = runRemote(execCommand(target, 'swarm', value, value, [value], false));
    expect(readdirSync(markers)).toEqual([]);
    expect(result.code, result.stderr).toBe(7);
    expect(stubCalls(shell)).toContainEqual(['ps', '--quiet', '--filter', `label=com.docker.swarm.service.name=${value}_${value}`]);
    expect(stubCalls(shell)).toContainEqual(['exec', '--interactive', CONTAINER, value]);
  });

  it.each(hostile)('never runs a service with %s that has no container, and names it in its message', (_name, value) => {
    const result = runRemote(execCommand(target, 'compose', value, value, ['sh'], false), { AIDD_NO_CONTAINER: '1' });
    expect(readdirSync(markers)).toEqual([]);
    expect(result.code).toBe(125);
    expect(result.stderr).toBe(`service ${value} has no running container on the server; see aidd status\n`);
  });
});

describe('logsCommand', () => {
  const request = (overrides: Partial<LogsRequest> = {}): LogsRequest => ({ target: 'compose', project: 'myapp', services: ['api'], follow: false, tail: '100', ...overrides });

  it('is a read-only ssh call to the target over the shared options, never on a remote terminal', () => {
    const command = logsCommand(target, request());
    expect(command.argv.slice(0, -1)).toEqual(['ssh', ...sshOptions(target), '-p', '22', 'u@127.0.0.1']);
    expect(command.readOnly).toBe(true);
    expect(command.interactive).toBe(true);
  });

  it("prints each line of each service's containers prefixed with the service", () => {
    const result = runRemote(logsCommand(target, request({ services: ['api', 'bot'] })));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split('\n').filter(Boolean).sort()).toEqual(['api | first line', 'api | second line', 'bot | first line', 'bot | second line']);
    const made = stubCalls(shell);
    expect(made).toContainEqual(['ps', '--all', '--quiet', ...filters('myapp', 'api')]);
    expect(made).toContainEqual(['ps', '--all', '--quiet', ...filters('myapp', 'bot')]);
    expect(made.filter((call) => call[0] === 'logs')).toEqual([
      ['logs', '--tail', '100', CONTAINER],
      ['logs', '--tail', '100', CONTAINER],
    ]);
  });

  it('passes --tail, --since and --follow to docker logs', () => {
    runRemote(logsCommand(target, request({ tail: 'all', since: '2026-11-28T10:00:00+02:00', follow: true })));
    expect(stubCalls(shell).filter((call) => call[0] === 'logs')).toEqual([['logs', '--tail', 'all', '--since', '2026-11-28T10:00:00+02:00', '--follow', CONTAINER]]);
    clearStubShell(shell);
    runRemote(logsCommand(target, request({ tail: '5', follow: true })));
    expect(stubCalls(shell).filter((call) => call[0] === 'logs')).toEqual([['logs', '--tail', '5', '--follow', CONTAINER]]);
    clearStubShell(shell);
    runRemote(logsCommand(target, request({ tail: 'all', since: '10m' })));
    expect(stubCalls(shell).filter((call) => call[0] === 'logs')).toEqual([['logs', '--tail', 'all', '--since', '10m', CONTAINER]]);
  });

  it('exits 1 with one line when no service has a container', () => {
    const result = runRemote(logsCommand(target, request({ services: ['api', 'bot'] })), { AIDD_NO_CONTAINER: '1' });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('no container of api bot runs on the server; see aidd status\n');
    expect(stubCalls(shell).map((call) => call[0])).toEqual(['ps', 'ps']);
  });

  it.each(hostile)('never runs a project or service with %s, passes it unchanged and prints it literally', (_name, value) => {
    const result = runRemote(logsCommand(target, request({ project: value, services: [value] })));
    expect(readdirSync(markers)).toEqual([]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${value} | first line\n${value} | second line\n`);
    const made = stubCalls(shell);
    expect(made).toContainEqual(['ps', '--all', '--quiet', ...filters(value, value)]);
    expect(made).toContainEqual(['logs', '--tail', '100', CONTAINER]);
    expect(made).toHaveLength(2);
  });

  it("reads a swarm service's logs from every node with docker service logs, the options passed on", () => {
    const result = runRemote(logsCommand(target, request({ target: 'swarm', services: ['api', 'bot'], tail: 'all', since: '10m', follow: true })));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split('\n').filter(Boolean).sort()).toEqual(['myapp_api.1.x@node | swarm line', 'myapp_bot.1.x@node | swarm line']);
    expect(stubCalls(shell).sort()).toEqual([
      ['service', 'logs', '--tail', 'all', '--since', '10m', '--follow', 'myapp_api'],
      ['service', 'logs', '--tail', 'all', '--since', '10m', '--follow', 'myapp_bot'],
    ]);
  });

  it.each(hostile)('never runs a swarm project or service with %s, and passes it unchanged', (_name, value) => {
    const result = runRemote(logsCommand(target, request({ target: 'swarm', project: value, services: [value] })));
    expect(readdirSync(markers)).toEqual([]);
    expect(result.code, result.stderr).toBe(0);
    expect(stubCalls(shell)).toEqual([['service', 'logs', '--tail', '100', `${value}_${value}`]]);
  });

  it.each(hostile)('never runs a --since or --tail with %s (were one to get past the checks)', (_name, value) => {
    runRemote(logsCommand(target, request({ since: value, tail: value })));
    expect(readdirSync(markers)).toEqual([]);
    expect(stubCalls(shell)).toContainEqual(['logs', '--tail', value, '--since', value, CONTAINER]);
  });
});
