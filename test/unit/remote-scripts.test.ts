// What remote scripts do on a server, run under bash against a scratch deploy path with stub docker
// and docker-compose on PATH: the backup that cannot be skipped, the release directory that is never
// reused, and the state the deploy decides from.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseState } from '../../lib/deploy/engine.ts';
import * as scripts from '../../lib/deploy/remote-scripts.ts';

const bin = mkdtempSync(path.join(os.tmpdir(), 'aidd-stubs-'));
// `ps -q` answers with the container id in AIDD_CONTAINER, empty when the database is not running.
writeFileSync(path.join(bin, 'docker'), '#!/bin/sh\ncase "$*" in "compose version"*) exit 1 ;; *inspect*) echo true ;; esac\nexit 0\n', { mode: 0o755 });
// Every other call is recorded in AIDD_CALLS; exec with `sh -c restore` keeps the stdin it got in AIDD_STDIN.
writeFileSync(
  path.join(bin, 'docker-compose'),
  `#!/bin/bash
echo "\${*: -3}" >> "\${AIDD_CALLS:-/dev/null}"
case "$*" in
  *" ps -q "*) echo "$AIDD_CONTAINER" ;;
  *" config --services"*) printf 'postgres\\napi\\nbot\\n' ;;
  *" exec "*restore*) cat > "$AIDD_STDIN" ;;
  *" exec "*) echo dump ;;
esac
exit 0
`,
  { mode: 0o755 },
);

function run(script: string, env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const result = spawnSync('bash', ['-s'], { input: script, env: { PATH: `${bin}:/usr/bin:/bin`, ...env }, encoding: 'utf8' });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

function deployDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-server-'));
  mkdirSync(path.join(dir, 'releases', 'r1'), { recursive: true });
  return dir;
}

const backup = { service: 'postgres', command: 'pg_dump', extension: 'dump' };

describe('remote scripts on a server', () => {
  it('the backup fails, naming the service, when the database is not running; it never exits 0 without a dump', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    const missing = run(scripts.backupScript(layout, 'r1', 'r2', backup), { AIDD_CONTAINER: '' });
    expect(missing.code).toBe(scripts.REMOTE_EXIT.backupFailed);
    expect(missing.stderr.trim()).toBe('no running postgres container to back up');
    const saved = run(scripts.backupScript(layout, 'r1', 'r2', backup), { AIDD_CONTAINER: 'c1' });
    expect(saved.code, saved.stderr).toBe(0);
    expect(readFileSync(path.join(dir, 'backups', 'r2.dump'), 'utf8')).toBe('dump\n');
  });

  it('an upload never writes into a release directory that exists', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    writeFileSync(path.join(dir, 'releases', 'r1', 'docker-compose.yml'), 'first\n');
    const again = run(scripts.uploadScript(layout, { id: 'r1', compose: 'second\n', releaseJson: '{}', env: 'A=1\n', envRequired: true }));
    expect(again.code).toBe(scripts.REMOTE_EXIT.releaseExists);
    expect(again.stderr.trim()).toBe('release r1 already exists on the server');
    expect(readFileSync(path.join(dir, 'releases', 'r1', 'docker-compose.yml'), 'utf8')).toBe('first\n');
  });

  it('the lock prints the state under it: current, each release with its record, and which went live per the audit log', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    for (const [id, previous] of [['r1', null], ['r2', 'r1'], ['r3', 'r2']] as const) {
      mkdirSync(path.join(dir, 'releases', id), { recursive: true });
      writeFileSync(path.join(dir, 'releases', id, 'release.json'), JSON.stringify({ id, previous }, null, 2));
    }
    symlinkSync('releases/r2', path.join(dir, 'current'));
    // r3 was interrupted at the switch: the audit log has no line saying it went live.
    const audit = [
      { action: 'deploy', release: 'r1', result: 'deployed' },
      { action: 'deploy', release: 'r2', previous: 'r1', result: 'deployed' },
      { action: 'interrupted', release: 'r3', previous: 'r2', result: 'interrupted', detail: '"release":"r3"' },
      { action: 'rollback', release: 'r1', previous: 'r2', result: 'ok' },
    ];
    writeFileSync(path.join(dir, 'deploys.log'), audit.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const locked = run(scripts.lockScript(layout, '{"id":"x"}'));
    expect(locked.stdout.startsWith('locked\n')).toBe(true);
    const state = parseState(locked.stdout);
    expect(state).toMatchObject({ current: 'r2', releases: ['r1', 'r2', 'r3'], live: ['r1', 'r2'] });
    expect(state.records.r3).toEqual({ id: 'r3', previous: 'r2' });
    expect(run(scripts.lockScript(layout, '{"id":"y"}')).stdout).toBe('held {"id":"x"}\n');
    execFileSync('bash', ['-s'], { input: scripts.unlockScript(layout, 'x') });
    expect(run(scripts.lockScript(layout, '{"id":"y"}')).stdout.startsWith('locked\n')).toBe(true);
  });

  it('a step started apart from the connection outlives it, keeps its output and exit status, and holds off --break-lock', async () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    const marker = path.join(dir, 'finished');
    const step = scripts.remoteScript(layout, 'slow', scripts.sh`sleep 2; echo done; echo warning >&2; touch ${marker}; exit 3
`);
    // The connection that started it ends at once; its whole process group is killed, as a Ctrl-C would.
    const started = spawnSync('setsid', ['--wait', 'bash', '-c', 'bash -s; kill -INT 0'], { input: scripts.startStepScript(layout, 'r1', 'slow', step, 60), encoding: 'utf8' });
    expect(started.stdout).toBe('started r1/slow\n');
    const running = run(scripts.waitStepScript(layout, 'r1', 'slow', 0));
    expect(running.code).toBe(scripts.REMOTE_EXIT.stepRunning);
    const lockDir = path.join(dir, 'lock');
    mkdirSync(lockDir);
    const refused = run(scripts.breakLockScript(layout, '{}'));
    expect(refused.code).toBe(scripts.REMOTE_EXIT.stepStillRunning);
    expect(refused.stderr.trim()).toBe('r1/slow');
    const ended = run(scripts.waitStepScript(layout, 'r1', 'slow', 30));
    expect(ended).toEqual({ code: 0, stdout: 'done\nstep-status=3\n', stderr: 'warning\n' });
    expect(readFileSync(marker, 'utf8')).toBe('');
    expect(run(scripts.breakLockScript(layout, '{}')).stdout).toMatch(/^broke /);
  });

  it('a restore stops the other services, feeds the backup to the restore command, and starts the stack again', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    mkdirSync(path.join(dir, 'backups'));
    writeFileSync(path.join(dir, 'backups', 'r1.dump'), 'the dump\n');
    const calls = path.join(dir, 'calls');
    const stdin = path.join(dir, 'stdin');
    const missing = run(scripts.restoreScript(layout, 'r1', 'r0.dump', 'restore', 'postgres'), { AIDD_CONTAINER: 'c1' });
    expect(missing).toMatchObject({ code: scripts.REMOTE_EXIT.noBackup, stderr: 'there is no backup r0.dump on the server\n' });
    const restored = run(scripts.restoreScript(layout, 'r1', 'r1.dump', 'restore', 'postgres'), { AIDD_CONTAINER: 'c1', AIDD_CALLS: calls, AIDD_STDIN: stdin });
    expect(restored).toMatchObject({ code: 0, stdout: 'restored r1.dump into the database of r1\n' });
    expect(readFileSync(stdin, 'utf8')).toBe('the dump\n');
    const env = path.join(dir, 'releases', 'r1', '.env');
    // The last three arguments of each docker-compose call, in order.
    expect(readFileSync(calls, 'utf8').split('\n').filter(Boolean)).toEqual(['ps -q postgres', `${env} config --services`, 'stop api bot', 'sh -c restore', `${env} up -d`]);
  });
});
