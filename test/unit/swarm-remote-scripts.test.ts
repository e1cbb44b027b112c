import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodedVariables, rollOutScript, SWARM_EXIT } from '../../lib/deploy/swarm/remote-scripts.ts';

/** A service's state in one round of the stub: NAME UPDATE-STATE STARTED RUNNING/DESIRED (STARTED: unix seconds, `now` for a fresh update). */
type Round = string[];

/**
 * Runs rollOutScript under bash with a stub docker: `login` and `stack deploy` append their argv, stdin,
 * DOCKER_CONFIG, working directory and the given variables' values to a record (JSON lines); the stack
 * queries answer from `rounds`, one round per `docker stack services --quiet` call (a second on a server).
 */
function rollOut(rounds: Round[], options: { vars?: Record<string, string>; token?: string; deadlineSeconds?: number; secrets?: Record<string, string>; env?: Record<string, string> } = {}) {
  const bin = mkdtempSync(path.join(os.tmpdir(), 'aidd-rollout-'));
  mkdirSync(path.join(bin, 'releases', 'r1'), { recursive: true });
  const record = path.join(bin, 'record');
  const roundFile = path.join(bin, 'round');
  const names = Object.keys(options.vars ?? {});
  writeFileSync(path.join(bin, 'rounds.json'), JSON.stringify(rounds));
  writeFileSync(roundFile, '-1');
  writeFileSync(
    path.join(bin, 'docker'),
    `#!/bin/bash
round=$(cat "${roundFile}")
current() { node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const i = Math.min(Number(process.argv[2]), r.length - 1); for (const line of r[i]) console.log(line.replace(" now ", " " + Math.floor(Date.now() / 1000) + " "))' "${bin}/rounds.json" "$round"; }
case "$*" in
  "secret inspect "*) case " $AIDD_EXISTING_SECRETS " in *" $3 "*) exit 0 ;; *) exit 1 ;; esac ;;
  "secret ls "*) printf '%s\\n' $AIDD_LABELLED_SECRETS ;;
  "login "*|"stack deploy "*|"secret create "*|"secret rm "*) node -e 'const fs = require("fs"); const stdin = ["login", "secret"].includes(process.argv[2]) && process.argv[3] !== "rm" ? fs.readFileSync(0, "utf8") : ""; fs.appendFileSync(process.argv[1], JSON.stringify({ argv: process.argv.slice(2), stdin, config: process.env.DOCKER_CONFIG, cwd: process.cwd(), env: Object.fromEntries(${JSON.stringify(names)}.map((n) => [n, process.env[n]])) }) + "\\n")' "${record}" "$@" ;;
  "stack services --quiet "*) round=$((round + 1)); echo "$round" > "${roundFile}"; current | awk '{ print "id-" $1 }' ;;
  "service inspect "*) current | awk '{ print $1, $2, $3 }' ;;
  "stack services --format "*) current | awk '{ print $1, $4 }' ;;
esac
`,
    { mode: 0o755 },
  );
  const script = rollOutScript({ deployPath: bin, project: 'shop' }, 'r1', options.vars ?? {}, { registry: '127.0.0.1:5000', username: 'ci', token: options.token }, options.deadlineSeconds ?? 20, options.secrets);
  const result = spawnSync('bash', ['-s'], { input: script, env: { PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin`, ...options.env }, encoding: 'utf8', timeout: 30_000 });
  const calls = existsSync(record)
    ? readFileSync(record, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { argv: string[]; stdin: string; config: string; cwd: string; env: Record<string, string> })
    : [];
  return { ...result, script, calls, dir: bin, rounds: Number(readFileSync(roundFile, 'utf8')) + 1 };
}

describe('the stack deploy on a swarm manager', () => {
  const values = {
    PLAIN: 'plain-7781',
    QUOTES: `it's "quoted" \\ and $(touch /tmp/aidd-should-not-exist) \`id\``,
    LINES: 'first-7783\nsecond-7784\n',
    EMPTY: '',
    SPACES: '  padded-7782  ',
  };

  it('gives docker stack deploy every variable exactly, in its environment and never on a command line', () => {
    const token = 'registry-token-7790';
    const run = rollOut([['shop_web none 0 1/1']], { vars: values, token });
    expect(run.status, run.stderr).toBe(0);
    expect(run.calls.map((call) => call.argv)).toEqual([
      ['login', '127.0.0.1:5000', '--username=ci', '--password-stdin'],
      ['stack', 'deploy', '--with-registry-auth', '--prune', '--compose-file', 'docker-compose.yml', 'shop'],
    ]);
    // The token reaches docker login on stdin, into a DOCKER_CONFIG of the script's own that is gone afterwards.
    expect(run.calls[0]!.stdin.trim()).toBe(token);
    expect(run.calls[1]!.config).toBe(run.calls[0]!.config);
    expect(existsSync(run.calls[0]!.config)).toBe(false);
    expect(run.calls[1]!.cwd).toBe(path.join(run.dir, 'releases', 'r1'));
    expect(run.calls[1]!.env).toEqual(values);
    expect(existsSync('/tmp/aidd-should-not-exist')).toBe(false);
    // No value stands in the script as written (the token does, in a heredoc on stdin, as the pull script has it).
    for (const value of Object.values(values).filter((value) => value.trim().length > 3)) expect(run.script).not.toContain(value);
  });

  it('logs in only with a token', () => {
    const run = rollOut([['shop_web none 0 1/1']]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.calls.map((call) => call.argv[0])).toEqual(['stack']);
  });

  it('makes each Swarm secret not there yet from its variable, the value on stdin, and removes the labelled ones no release names', () => {
    const value = `s3cret "quoted" $(touch /tmp/aidd-should-not-exist)\nline two`;
    const run = rollOut([['shop_web none 0 1/1']], {
      vars: { DB_PASSWORD: value, API_KEY: 'key-7791' },
      secrets: { db_password_aaaaaaaaaaaa: 'DB_PASSWORD', api_key_bbbbbbbbbbbb: 'API_KEY' },
      env: { AIDD_EXISTING_SECRETS: 'api_key_bbbbbbbbbbbb', AIDD_LABELLED_SECRETS: 'api_key_bbbbbbbbbbbb old_cccccccccccc' },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.calls.map((call) => call.argv)).toEqual([
      ['secret', 'create', '--label', 'com.aidd-devops.secret', '--label', 'com.docker.stack.namespace=shop', 'db_password_aaaaaaaaaaaa', '-'],
      ['stack', 'deploy', '--with-registry-auth', '--prune', '--compose-file', 'docker-compose.yml', 'shop'],
      // No release directory names either: both are candidates; docker refuses to remove one in use.
      ['secret', 'rm', 'api_key_bbbbbbbbbbbb'],
      ['secret', 'rm', 'old_cccccccccccc'],
    ]);
    expect(run.calls[0]!.stdin).toBe(value);
    expect(run.script).not.toContain('s3cret');
    expect(existsSync('/tmp/aidd-should-not-exist')).toBe(false);
  });

  it('keeps a labelled Swarm secret a kept release names', () => {
    const bin = rollOut([['shop_web none 0 1/1']]).dir;
    writeFileSync(path.join(bin, 'releases', 'r1', 'docker-compose.yml'), 'secrets:\n  db_password: {external: true, name: db_password_aaaaaaaaaaaa}\n');
    const run = spawnSync('bash', ['-s'], {
      input: rollOutScript({ deployPath: bin, project: 'shop' }, 'r1', {}, { registry: 'r' }, 5),
      env: { PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin`, AIDD_LABELLED_SECRETS: 'db_password_aaaaaaaaaaaa old_cccccccccccc' },
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    const calls = readFileSync(path.join(bin, 'record'), 'utf8').trim().split('\n').map((line) => (JSON.parse(line) as { argv: string[] }).argv);
    expect(calls.filter((argv) => argv[0] === 'secret')).toEqual([['secret', 'rm', 'old_cccccccccccc']]);
  });

  it('refuses a name that is not a variable name', () => {
    expect(() => encodedVariables({ 'A B': 'x' })).toThrow(/is not a variable name/);
  });
});

describe('waiting for a stack to converge', { timeout: 30_000 }, () => {
  it('waits until every update is done and every service runs all its replicas', () => {
    const run = rollOut([
      ['shop_web updating now 1/2', 'shop_db none 0 1/1'],
      ['shop_web updating now 2/2', 'shop_db none 0 1/1'],
      ['shop_web completed now 1/2', 'shop_db none 0 1/1'],
      ['shop_web completed now 2/2', 'shop_db none 0 1/1'],
    ]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.rounds).toBe(4);
    expect(run.stdout).toBe('service shop_db none 1/1\nservice shop_web completed 2/2\n');
  });

  it('ends at once when swarm rolled an update back, naming the service on stderr', () => {
    const run = rollOut([['shop_web updating now 2/2'], ['shop_web rollback_started now 2/2'], ['shop_web rollback_completed now 2/2'], ['shop_web completed now 2/2']]);
    expect(run.status).toBe(SWARM_EXIT.rolledBack);
    expect(run.rounds).toBe(3);
    expect(run.stdout).toBe('service shop_web rollback_completed 2/2\n');
    expect(run.stderr.trim()).toBe('swarm rolled back the update of shop_web (rollback_completed): its new tasks did not stay healthy');
  });

  it('takes an update state from before this deploy (a service it left alone) for none', () => {
    const run = rollOut([['shop_web rollback_completed 1000 2/2', 'shop_db updating 1000 1/1']]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe('service shop_db none 1/1\nservice shop_web none 2/2\n');
  });

  it('gives up at the deadline, with where each service stands', () => {
    const run = rollOut([['shop_web updating now 1/2']], { deadlineSeconds: 2 });
    expect(run.status).toBe(SWARM_EXIT.notConverged);
    expect(run.stdout).toBe('service shop_web updating 1/2\n');
    expect(run.stderr.trim()).toBe('not converged in 2 s: shop_web updating 1/2');
  });
});
