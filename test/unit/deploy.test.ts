import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { releaseCompose } from '../../lib/app/compose-file.ts';
import { builtServices } from '../../lib/app/images.ts';
import { healthcheckArgv, lockHeldError, newReleaseId, parseFacts, pinnedRefs, switchPlan } from '../../lib/deploy/engine.ts';
import { proxyMainConfig } from '../../lib/deploy/proxy.ts';
import * as scripts from '../../lib/deploy/remote-scripts.ts';
import { EXIT } from '../../lib/core/cli.ts';
import { DEFAULT_REGISTRY_COMPOSE_FILE } from '../../lib/app/target.ts';

const layout = { deployPath: '~/apps/aidd bot', project: 'aidd-bot' };
const registryApp = await loadComposeApp(DEFAULT_REGISTRY_COMPOSE_FILE);

/** A PATH entry with a docker that always fails, so pruning never touches real images. */
const emptyBin = mkdtempSync(path.join(os.tmpdir(), 'aidd-bin-'));
writeFileSync(path.join(emptyBin, 'docker'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });

function bashSyntaxOk(script: string): void {
  execFileSync('bash', ['-n'], { input: script });
}

describe('remote scripts', () => {
  const all: [string, string][] = [
    ['preflight', scripts.preflightScript(layout)],
    ['pull', scripts.pullScript(layout, { registry: 'ghcr.io', username: 'me', token: "t0k'en\"$x", refs: ['ghcr.io/me/aidd-api:latest'] })],
    ['lock', scripts.lockScript(layout, '{"who":"me"}')],
    ['lock-with-variables', scripts.lockScript(layout, '{"who":"me"}', ['API_PORT', 'BIND_ADDRESS'])],
    ['unlock', scripts.unlockScript(layout, 'abc')],
    ['break-lock', scripts.breakLockScript(layout, '{}')],
    ['upload', scripts.uploadScript(layout, { id: 'r1', compose: 'services: {}\n', releaseJson: '{}', env: 'A=1\nB="two words"\n', envRequired: true })],
    ['upload-with-routes', scripts.uploadScript(layout, { id: 'r1', compose: 'services: {}\n', releaseJson: '{}', envRequired: true, proxyConfig: 'http://:8000 {\n}\n' })],
    ['upload-keep-env', scripts.uploadScript(layout, { id: 'r1', compose: 'services: {}\n', releaseJson: '{}', envRequired: true })],
    ['upload-keep-env-or-empty', scripts.uploadScript(layout, { id: 'r1', compose: 'services: {}\n', releaseJson: '{}', envRequired: false })],
    ['backup', scripts.backupScript(layout, 'r0', 'r1', { service: 'postgres', command: 'pg_dump -U "$POSTGRES_USER"', extension: 'dump' })],
    ['migrate', scripts.migrateScript(layout, 'r1', { service: 'api', command: ['migrate'], needs: ['postgres'] }, 60)],
    ['switch', scripts.switchScript(layout, 'r1', { routed: [], direct: ['postgres', 'api'], listeners: [], settled: [], proxyImage: 'caddy:2', proxyMainConfig: proxyMainConfig(), healthTimeoutSeconds: 60, probes: {} })],
    [
      'switch-routed',
      scripts.switchScript(layout, 'r1', {
        routed: [{ service: 'api', port: 8000, hostPort: 20001 }],
        direct: ['postgres', 'bot'],
        listeners: ['18000=api'],
        settled: ['postgres'],
        proxyImage: 'caddy:2',
        proxyMainConfig: proxyMainConfig(),
        healthTimeoutSeconds: 60,
        probes: { api: ['python3', '-c', "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"] },
      }),
    ],
    ['finish', scripts.finishScript(layout, 'r1', '{"action":"deploy"}', { keep: 5, protect: ['r0'] })],
    ['discard', scripts.discardReleaseScript(layout, 'r1', '{}')],
    ['history', scripts.historyScript(layout, 20)],
  ];

  it.each(all)('%s is valid bash, one function run with stdin closed, strict mode and umask 077', (name, script) => {
    bashSyntaxOk(script);
    expect(script.startsWith(`# aidd-devops: ${name.replace(/-(keep-env.*|routed|with-.*)$/, '')}\naidd_main() {\nset -euo pipefail\numask 077\n`)).toBe(true);
    expect(script.endsWith('}\naidd_main </dev/null\n')).toBe(true);
  });

  it('runs nothing when the script arrives cut short', () => {
    const script = scripts.remoteScript({ deployPath: '/tmp', project: 'p' }, 'test', scripts.raw('echo started\n'));
    const cut = script.slice(0, script.indexOf('aidd_main </dev/null'));
    expect(execFileSync('bash', ['-s'], { input: cut }).toString()).toBe('');
    expect(execFileSync('bash', ['-s'], { input: script }).toString()).toBe('started\n');
  });

  it('keeps the script when a step reads stdin', () => {
    const script = scripts.remoteScript({ deployPath: '/tmp', project: 'p' }, 'test', scripts.raw('cat >/dev/null\necho after\n'));
    expect(execFileSync('bash', ['-s'], { input: script }).toString()).toBe('after\n');
  });

  it('finish keeps the newest releases, the live one and the rollback target with their backups, pruning the rest', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-finish-'));
    mkdirSync(path.join(dir, 'backups'));
    for (const [index, id] of ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'].entries()) {
      mkdirSync(path.join(dir, 'releases', id), { recursive: true });
      writeFileSync(path.join(dir, 'releases', id, 'docker-compose.yml'), `services:\n  api:\n    image: reg/api@${id}\n`);
      writeFileSync(path.join(dir, 'backups', `${id}.dump`), id);
      // Newest backup last, as the deploys took them.
      utimesSync(path.join(dir, 'backups', `${id}.dump`), 1_700_000_000 + index, 1_700_000_000 + index);
    }
    const script = scripts.finishScript({ deployPath: dir, project: 'p' }, 'r1', '{"action":"rollback"}', { keep: 2, protect: ['r3'] });
    const output = execFileSync('bash', ['-s'], { input: script, env: { ...process.env, PATH: `${emptyBin}:/usr/bin:/bin` } }).toString();
    expect(output).toBe('pruned r2\npruned r4\npruned backup r4.dump\npruned backup r2.dump\n');
    expect(readdirSync(path.join(dir, 'releases')).sort()).toEqual(['r1', 'r3', 'r5', 'r6']);
    expect(readdirSync(path.join(dir, 'backups')).sort()).toEqual(['r1.dump', 'r3.dump', 'r5.dump', 'r6.dump']);
    expect(readlinkSync(path.join(dir, 'current'))).toBe('releases/r1');
    expect(readFileSync(path.join(dir, 'deploys.log'), 'utf8')).toBe('{"action":"rollback"}\n');
  });

  it('expands ~/ to the deploy user home and quotes the rest', () => {
    expect(scripts.prelude(layout).text).toContain(`deploy="$HOME"/'apps/aidd bot'`);
    expect(scripts.prelude({ deployPath: '/opt/aidd', project: 'p' }).text).toContain('deploy=/opt/aidd');
  });

  it('puts the registry token only inside a quoted heredoc, never on a command line', () => {
    const script = scripts.pullScript(layout, { registry: 'ghcr.io', username: 'me', token: 'tok-123456', refs: ['r:1'] });
    const tokenLines = script.split('\n').filter((line) => line.includes('tok-123456'));
    expect(tokenLines).toEqual(['tok-123456']);
    expect(script).toMatch(/--password-stdin .*<<'AIDD_[0-9A-F]{12}'/);
  });

  it('heredoc delimiters never occur in the text they wrap', () => {
    const doc = scripts.heredoc('line\nAIDD_X\n');
    const delimiter = doc.start.text.slice(3, -1);
    expect(doc.body.text.split('\n').slice(0, -1)).not.toContain(delimiter);
    expect(doc.body.text.endsWith(`\n${delimiter}`)).toBe(true);
  });
});

describe('deploy helpers', () => {
  it('parses server facts: one line per release, its record, and whether it went live', () => {
    const facts = parseFacts(
      'docker=20.10.24\ncompose=docker-compose 1.29.2\ndisk_free_kb=5000000\nlock={"who":"x"}\ncurrent=r2\n' +
        'release=r1\nrecord={  "id": "r1",  "previous": null}\nlive=r1\nrelease=r2\nrecord={"id":"r2","previous":"r1"}\nlive=r2\n',
    );
    expect(facts).toMatchObject({ docker: '20.10.24', compose: 'docker-compose 1.29.2', diskFreeKb: 5000000, current: 'r2', releases: ['r1', 'r2'], lock: '{"who":"x"}', live: ['r1', 'r2'] });
    expect(facts.records.r2).toMatchObject({ previous: 'r1' });
  });

  it('names the lock holder and refuses with exit code 3', () => {
    const error = lockHeldError('{"who":"ana@laptop","at":"2026-11-27T10:00:00Z","reason":"deploy"}');
    expect(error.message).toBe('deploy lock is held by ana@laptop since 2026-11-27T10:00:00Z (deploy); wait for it, or if it is stale run ssh-deploy --break-lock');
    expect(error.exitCode).toBe(EXIT.refused);
  });

  it('makes sortable release ids, never one already on the server', () => {
    const now = new Date('2026-11-27T14:50:01.123Z');
    expect(newReleaseId('0123456789abcdef0123', now)).toBe('20261127T145001Z-0123456789ab');
    expect(newReleaseId('abc', now, ['20261127T145001Z-abc', '20261127T145001Z-abc-2'])).toBe('20261127T145001Z-abc-3');
  });

  it.each([
    ['CMD', { test: ['CMD', 'wget', '-q', 'http://127.0.0.1/'] }, ['wget', '-q', 'http://127.0.0.1/']],
    ['CMD-SHELL', { test: ['CMD-SHELL', 'curl -f http://127.0.0.1/ || exit 1'] }, ['sh', '-c', 'curl -f http://127.0.0.1/ || exit 1']],
    ['a string, which compose runs with a shell', { test: 'pg_isready' }, ['sh', '-c', 'pg_isready']],
    ['a variable compose would replace', { test: ['CMD', 'pg_isready', '-U', '${POSTGRES_USER:-aidd}'] }, undefined],
    ['NONE', { test: ['NONE'] }, undefined],
    ['disable: true', { test: ['CMD', 'true'], disable: true }, undefined],
    ['no healthcheck', undefined, undefined],
  ])("runs a healthcheck with %s in the new container as docker would", (_, healthcheck, argv) => {
    expect(healthcheckArgv(healthcheck)).toEqual(argv);
  });

  it("switches AIDD Bot's api and frontend beside their running containers, probed with their own healthchecks, and the rest in place", () => {
    const routed = [
      { service: 'api', port: 8000, hostPort: 20001 },
      { service: 'frontend', port: 3000, hostPort: 20011 },
    ];
    const plan = switchPlan(registryApp, { routed, listen: { 'api:8000': 18000 } }, 'caddy:2', 90_500);
    expect(plan).toMatchObject({ routed, direct: ['postgres', 'bot'], proxyImage: 'caddy:2', healthTimeoutSeconds: 91 });
    expect(Object.keys(plan.probes)).toEqual(['api', 'frontend']);
    expect(plan.probes.api!.slice(0, 2)).toEqual(['python3', '-c']);
    expect(plan.probes.frontend!.slice(0, 2)).toEqual(['node', '-e']);
  });

  it('finds the app services of the registry compose file and pins them by digest', () => {
    expect(builtServices(registryApp, { registry: 'reg:5000', owner: 'me' }).map((service) => service.name).sort()).toEqual(['api', 'bot', 'frontend']);
    const refs = { api: 'reg:5000/me/aidd-api:latest', bot: 'reg:5000/me/aidd-bot@sha256:bb' };
    const pinned = pinnedRefs('digest reg:5000/me/aidd-api:latest other/x@sha256:00 reg:5000/me/aidd-api@sha256:aa\n', refs);
    expect(pinned).toEqual({ api: 'reg:5000/me/aidd-api@sha256:aa', bot: 'reg:5000/me/aidd-bot@sha256:bb' });
    const compose = releaseCompose(registryApp.raw, pinned);
    expect(compose).toContain('image: reg:5000/me/aidd-api@sha256:aa');
    expect(compose).toContain('image: ${POSTGRES_IMAGE:-postgres:16-alpine}');
  });
});
