// Finding 1 of issue 9: no value that enters a remote script can run as a command. Every builder gets
// hostile values in every slot that takes one; each script then runs under bash with stub docker and
// docker-compose first on PATH, and no injected command may have left its marker file.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as scripts from '../../lib/deploy/remote-scripts.ts';
import { clearStubShell, stubCalls, stubShell } from './stub-shell.ts';
import { freePort } from '../../lib/core/net.ts';

// A free port: the switch tries each new listen port before reloading the proxy.
const LISTEN_PORT = await freePort();

const shell = stubShell('aidd-injection');
const { scratch, markers, home, bin } = shell;

// Stubs record their argv (NUL-separated, a file per call: the pull runs several at once, and appends
// to one log would interleave) and answer just enough for every script to run to its end: a container
// id, a running and healthy state, a digest. AIDD_PROXY_DOWN makes every container look stopped, so
// the switch takes its branch that starts the proxy.
const stub = (name: string) => `#!/bin/sh
printf '%s\\0' ${name} "$@" > "$(mktemp "$AIDD_STUB_CALLS/call.XXXXXXXX")"
case "$*" in
  "compose version"*) exit 1 ;;
  *State.Running*) if [ -n "$AIDD_PROXY_DOWN" ]; then echo false; else echo true; fi ;;
  *inspect*) echo healthy ;;
  *" ps -q "*|"ps --all --quiet "*) echo 0123456789ab ;;
  *version*) echo 1.29.2 ;;
esac
exit 0
`;
writeFileSync(path.join(bin, 'docker'), stub('docker'), { mode: 0o755 });
writeFileSync(path.join(bin, 'docker-compose'), stub('docker-compose'), { mode: 0o755 });

/** Each would leave a file in `markers` if bash ever ran it as a command. */
const hostile: [string, string][] = [
  ['command substitution', `$(touch ${markers}/dollar)`],
  ['backticks', `\`touch ${markers}/backtick\``],
  ['a semicolon', `x; touch ${markers}/semicolon`],
  ['single quotes', `x' ; touch ${markers}/single ; '`],
  ['double quotes', `x" ; touch ${markers}/double ; "`],
  ['a newline', `x\ntouch ${markers}/newline`],
  ['spaces and a glob', `a b * ${markers}/*`],
  ['a leading dash', `-rf; touch ${markers}/dash`],
  ['a variable', `\${PWD:+$(touch ${markers}/variable)}`],
];

/** Where the scripts find release `value` on the stub server. */
function releaseDir(value: string): string {
  return path.join(home, 'deploy', value, 'releases', value);
}

/** Every builder, with `value` in each slot that takes a string, and the environment the script runs in. */
function builders(value: string): [string, string, Record<string, string>?][] {
  const layout = { deployPath: `~/deploy/${value}`, project: value };
  const backup = { service: value, command: 'pg_dump', extension: value };
  const migrate = { service: value, command: [value, 'upgrade'], needs: [value] };
  const switchPlan = {
    routed: [
      { service: value, port: 8000, hostPort: 20001 },
      { service: `${value}-2`, port: 3000, hostPort: 20002 },
    ],
    direct: [value, 'postgres'],
    listeners: [`${LISTEN_PORT}=${value}`],
    settled: [value],
    proxyImage: value,
    proxyMainConfig: value,
    healthTimeoutSeconds: 5,
    probes: { [value]: [value, 'check'] },
  };
  return [
    ['preflight', scripts.preflightScript(layout)],
    ['pull', scripts.pullScript(layout, { registry: value, username: value, token: value, refs: [value, `${value}:2`] })],
    ['lock', scripts.lockScript(layout, value)],
    ['lock reading variables', scripts.lockScript(layout, value, ['API_PORT'])],
    ['unlock', scripts.unlockScript(layout, value)],
    ['unlock with an audit line', scripts.unlockScript(layout, value, value)],
    ['break-lock', scripts.breakLockScript(layout, value)],
    ['upload', scripts.uploadScript(layout, { id: value, compose: value, releaseJson: value, env: value, envRequired: true, proxyConfig: value })],
    ['upload keeping the .env', scripts.uploadScript(layout, { id: value, compose: value, releaseJson: value, envRequired: true })],
    ['upload without a .env needed', scripts.uploadScript(layout, { id: value, compose: value, releaseJson: value, envRequired: false })],
    ['backup', scripts.backupScript(layout, value, value, backup)],
    ['migrate', scripts.migrateScript(layout, value, migrate, 5)],
    ['switch', scripts.switchScript(layout, value, switchPlan)],
    ['switch starting the proxy', scripts.switchScript(layout, value, switchPlan), { AIDD_PROXY_DOWN: '1' }],
    ['switch without routes', scripts.switchScript(layout, value, { ...switchPlan, routed: [] })],
    ['discard', scripts.discardReleaseScript(layout, value, value)],
    ['finish', scripts.finishScript(layout, value, value, { keep: 1, protect: [value] })],
    ['audit', scripts.auditScript(layout, value)],
    ['history', scripts.historyScript(layout, 5)],
    ['release record', scripts.releaseRecordScript(layout, value)],
    ['restore', scripts.restoreScript(layout, value, value, value, value)],
    ['start a step', scripts.startStepScript(layout, value, value, scripts.switchScript(layout, value, switchPlan), 5)],
    ['wait for a step', scripts.waitStepScript(layout, value, value, 0)],
  ];
}

function runScript(script: string, env: Record<string, string> = {}): void {
  try {
    execFileSync('bash', ['-s'], {
      input: script,
      cwd: scratch,
      env: { ...shell.env, ...env },
      stdio: ['pipe', 'ignore', 'ignore'],
      timeout: 20_000,
    });
  } catch {
    // A script may refuse a value (a release directory that cannot exist); only a marker is a failure.
  }
}

describe('remote scripts never run a value as a command', () => {
  it.each(hostile)('a value with %s', (_name, value) => {
    clearStubShell(shell, { markers: true });
    // The release exists, so the switch runs past its first check (the upload cannot make a directory
    // whose name holds a slash); the discard removes it again.
    mkdirSync(releaseDir(value), { recursive: true });
    writeFileSync(path.join(releaseDir(value), 'proxy.caddy'), 'http://:8000 {\n}\n');
    for (const [, script, env] of builders(value)) runScript(script, env);
    expect(readdirSync(markers)).toEqual([]);
    // The value reached docker as one whole argument: quoted, neither run nor split.
    const made = stubCalls(shell);
    expect(made).toContainEqual(['docker', 'pull', '--quiet', value]);
    expect(made).toContainEqual(['docker', 'login', value, `--username=${value}`, '--password-stdin']);
    expect(made.some((call) => call[0] === 'docker-compose' && call.includes('run') && call.at(-2) === value && call.at(-1) === 'upgrade')).toBe(true);
    // The switch: a routed service scaled up beside its container, the app's routes file, the proxy's image.
    // Routed services travel as SERVICE:PORT:HOST_PORT lines, so a name with a colon or a newline (which
    // compose never allows in a service name) is cut short there: still one word, never a command.
    const routedName = value.split('\n')[0]!.split(':')[0]!;
    const scaled = made.filter((call) => call[0] === 'docker-compose' && call.at(-3) === '--scale').map((call) => call.slice(-2));
    expect(scaled).toContainEqual([`${routedName}=2`, routedName]);
    expect(made.some((call) => call[0] === 'docker-compose' && call.at(-3) === '--remove-orphans' && call.at(-2) === value && call.at(-1) === 'postgres')).toBe(true);
    expect(made).toContainEqual(['docker', 'exec', '-i', 'aidd-proxy', 'sh', '-c', 'cat > "$1"', 'sh', `/etc/caddy/apps/${value}.caddy`]);
    expect(made.some((call) => call.slice(0, 3).join(' ') === 'docker run --detach' && call[call.indexOf('caddy') - 1] === value)).toBe(true);
  });

  it('refuses a template that puts a value inside quotes or a comment', () => {
    const value = 'x';
    expect(() => scripts.sh`echo "pulling ${value}"`).toThrow(/inside quotes/);
    expect(() => scripts.sh`echo 'pulling ${value}'`).toThrow(/inside quotes/);
    expect(() => scripts.sh`# keep ${value}\necho`).toThrow(/inside quotes or a comment/);
    expect(() => scripts.sh`echo "$(basename ${value})"`).not.toThrow();
    expect(scripts.sh`echo ${'a b'} ${['c', "d'e"]} ${3} ${scripts.raw('"$HOME"')}`.text).toBe(`echo 'a b' c 'd'\\''e' 3 "$HOME"`);
  });
});
