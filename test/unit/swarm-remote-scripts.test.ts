import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { convergeScript, encodedVariables, stackDeployScript, SWARM_EXIT } from '../../lib/deploy/swarm/remote-scripts.ts';

describe('the stack deploy on a swarm manager', () => {
  const values = {
    PLAIN: 'plain-7781',
    QUOTES: `it's "quoted" \\ and $(touch /tmp/aidd-should-not-exist) \`id\``,
    LINES: 'first-7783\nsecond-7784\n',
    EMPTY: '',
    SPACES: '  padded-7782  ',
  };

  it('gives docker stack deploy every variable exactly, in its environment and never on a command line', () => {
    const deployPath = mkdtempSync(path.join(os.tmpdir(), 'aidd-stack-'));
    mkdirSync(path.join(deployPath, 'releases', 'r1'), { recursive: true });
    const bin = mkdtempSync(path.join(os.tmpdir(), 'aidd-stack-bin-'));
    const record = path.join(bin, 'record');
    // The stub docker records its argv and the variables' values it sees, as JSON.
    writeFileSync(
      path.join(bin, 'docker'),
      `#!/bin/bash\nnode -e 'const names = ${JSON.stringify(Object.keys(values))}; require("fs").writeFileSync(process.argv[1], JSON.stringify({ argv: process.argv.slice(2), cwd: process.cwd(), env: Object.fromEntries(names.map((n) => [n, process.env[n]])) }))' "${record}" "$@"\n`,
      { mode: 0o755 },
    );
    const script = stackDeployScript({ deployPath, project: 'shop' }, 'r1', values);
    const result = spawnSync('bash', ['-s'], { input: script, env: { PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin` }, encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const seen = JSON.parse(readFileSync(record, 'utf8')) as { argv: string[]; cwd: string; env: Record<string, string> };
    expect(seen.argv).toEqual(['stack', 'deploy', '--with-registry-auth', '--prune', '--compose-file', 'stack.yml', 'shop']);
    expect(seen.cwd).toBe(path.join(deployPath, 'releases', 'r1'));
    expect(seen.env).toEqual(values);
    // No value stands in the script as written.
    for (const value of Object.values(values).filter((value) => value.trim().length > 3)) expect(script).not.toContain(value);
  });

  it('refuses a name that is not a variable name', () => {
    expect(() => encodedVariables({ 'A B': 'x' })).toThrow(/is not a variable name/);
  });
});

describe('waiting for a stack to converge', () => {
  /**
   * A stub docker that answers from a list of rounds, one per `docker stack services --quiet` call: each
   * round is the services' update states and replicas ("shop_web updating 1/2").
   */
  function converge(rounds: string[][], deadlineSeconds = 20) {
    const bin = mkdtempSync(path.join(os.tmpdir(), 'aidd-converge-'));
    const roundFile = path.join(bin, 'round');
    writeFileSync(path.join(bin, 'rounds.json'), JSON.stringify(rounds));
    writeFileSync(roundFile, '-1');
    writeFileSync(
      path.join(bin, 'docker'),
      `#!/bin/bash
round=$(cat "${roundFile}")
current() { node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const i = Math.min(Number(process.argv[2]), r.length - 1); for (const line of r[i]) console.log(line)' "${bin}/rounds.json" "$round"; }
case "$*" in
  "stack services --quiet "*) round=$((round + 1)); echo "$round" > "${roundFile}"; current | awk '{ print "id-" $1 }' ;;
  "service inspect "*) current | awk '{ print $1, $2 }' ;;
  "stack services --format "*) current | awk '{ print $1, $3 }' ;;
esac
`,
      { mode: 0o755 },
    );
    // Each round waits a second on the server; the stub's rounds stand for seconds.
    const result = spawnSync('bash', ['-s'], { input: convergeScript({ deployPath: bin, project: 'shop' }, deadlineSeconds), env: { PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin` }, encoding: 'utf8', timeout: 30_000 });
    return { ...result, rounds: Number(readFileSync(roundFile, 'utf8')) + 1 };
  }

  it('waits until every update is done and every service runs all its replicas', () => {
    const result = converge([
      ['shop_web updating 1/2', 'shop_db none 1/1'],
      ['shop_web updating 2/2', 'shop_db none 1/1'],
      ['shop_web completed 1/2', 'shop_db none 1/1'],
      ['shop_web completed 2/2', 'shop_db none 1/1'],
    ]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.rounds).toBe(4);
    expect(result.stdout).toBe('service shop_db none 1/1\nservice shop_web completed 2/2\n');
  });

  it('ends at once when swarm rolled an update back, naming the service', () => {
    const result = converge([['shop_web updating 2/2'], ['shop_web rollback_started 2/2'], ['shop_web rollback_completed 2/2'], ['shop_web completed 2/2']]);
    expect(result.status).toBe(SWARM_EXIT.rolledBack);
    expect(result.rounds).toBe(3);
    expect(result.stdout).toBe('service shop_web rollback_completed 2/2\n');
  });

  it('gives up at the deadline, with where each service stands', () => {
    const result = converge([['shop_web updating 1/2']], 2);
    expect(result.status).toBe(SWARM_EXIT.notConverged);
    expect(result.stdout).toBe('service shop_web updating 1/2\n');
  });
});
