import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodedVariables, stackDeployScript } from '../../lib/deploy/swarm/remote-scripts.ts';

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
