// Finding 1 of issue 9: no value that enters a remote script can run as a command. Every builder gets
// hostile values in every slot that takes one; each script then runs under bash with stub docker and
// docker-compose first on PATH, and no injected command may have left its marker file.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as scripts from '../../lib/deploy/remote-scripts.ts';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'aidd-injection-'));
const markers = path.join(scratch, 'markers');
const home = path.join(scratch, 'home');
const bin = path.join(scratch, 'bin');
const log = path.join(scratch, 'docker.log');
for (const dir of [markers, home, bin]) mkdirSync(dir);

// Stubs record their argv (NUL-separated, one record per call) and answer just enough for every
// script to run to its end: a container id, a running and healthy state, a digest.
const stub = (name: string) => `#!/bin/sh
printf '%s\\0' ${name} "$@" >> "$AIDD_STUB_LOG"; printf '\\036' >> "$AIDD_STUB_LOG"
case "$*" in
  "compose version"*) exit 1 ;;
  *State.Running*) echo true ;;
  *inspect*) echo healthy ;;
  *" ps -q "*) echo 0123456789ab ;;
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

/** Every builder, with `value` in each slot that takes a string. */
function builders(value: string): [string, string][] {
  const layout = { deployPath: `~/deploy/${value}`, project: value };
  const backup = { service: value, command: 'pg_dump', extension: value };
  const migrate = { service: value, command: [value, 'upgrade'], needs: [value] };
  return [
    ['preflight', scripts.preflightScript(layout)],
    ['pull', scripts.pullScript(layout, { registry: value, username: value, token: value, refs: [value, `${value}:2`] })],
    ['lock', scripts.lockScript(layout, value)],
    ['unlock', scripts.unlockScript(layout, value)],
    ['break-lock', scripts.breakLockScript(layout, value)],
    ['upload', scripts.uploadScript(layout, { id: value, compose: value, releaseJson: value, env: value, envRequired: true })],
    ['upload keeping the .env', scripts.uploadScript(layout, { id: value, compose: value, releaseJson: value, envRequired: true })],
    ['upload without a .env needed', scripts.uploadScript(layout, { id: value, compose: value, releaseJson: value, envRequired: false })],
    ['backup', scripts.backupScript(layout, value, value, backup)],
    ['migrate', scripts.migrateScript(layout, value, migrate, 5)],
    ['discard', scripts.discardReleaseScript(layout, value, value)],
    ['up', scripts.upScript(layout, value)],
    ['finish', scripts.finishScript(layout, value, value, { keep: 1, protect: [value] })],
    ['audit', scripts.auditScript(layout, value)],
    ['history', scripts.historyScript(layout, 5)],
    ['release record', scripts.releaseRecordScript(layout, value)],
    ['restore', scripts.restoreScript(layout, value, value, value, value)],
    ['start a step', scripts.startStepScript(layout, value, value, scripts.upScript(layout, value), 5)],
    ['wait for a step', scripts.waitStepScript(layout, value, value, 0)],
  ];
}

function runScript(script: string): void {
  try {
    execFileSync('bash', ['-s'], {
      input: script,
      cwd: scratch,
      env: { PATH: `${bin}:/usr/bin:/bin`, HOME: home, AIDD_STUB_LOG: log },
      stdio: ['pipe', 'ignore', 'ignore'],
      timeout: 20_000,
    });
  } catch {
    // A script may refuse a value (a release directory that cannot exist); only a marker is a failure.
  }
}

function stubCalls(): string[][] {
  return readFileSync(log, 'utf8')
    .split('\x1e')
    .filter(Boolean)
    .map((call) => call.split('\0').slice(0, -1));
}

describe('remote scripts never run a value as a command', () => {
  it.each(hostile)('a value with %s', (_name, value) => {
    writeFileSync(log, '');
    for (const marker of readdirSync(markers)) rmSync(path.join(markers, marker));
    for (const [, script] of builders(value)) runScript(script);
    expect(readdirSync(markers)).toEqual([]);
    // The value reached docker as one whole argument: quoted, neither run nor split.
    const calls = stubCalls();
    expect(calls).toContainEqual(['docker', 'pull', '--quiet', value]);
    expect(calls).toContainEqual(['docker', 'login', value, `--username=${value}`, '--password-stdin']);
    expect(calls.some((call) => call[0] === 'docker-compose' && call.includes('run') && call.at(-2) === value && call.at(-1) === 'upgrade')).toBe(true);
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
