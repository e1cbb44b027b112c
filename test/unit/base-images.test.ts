import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { buildArgDefaults, dockerfileArgDefaults, hostNodeImageTag, offlineBuildArgs, officialImages } from '../../lib/build/base-images.ts';
import { interpolationVars, planImage } from '../../lib/build/build.ts';
import { loadComposeApp, type ComposeApp, type ComposeService } from '../../lib/app/compose.ts';
import { interpolationDefaults } from '../../lib/app/interpolate.ts';
import { DEFAULT_COMPOSE_FILE, REPO_ROOT } from '../../lib/app/target.ts';
import { Runner } from '../../lib/core/exec.ts';
import { createLogger } from '../../lib/core/log.ts';

describe('Dockerfile build ARG defaults', () => {
  it('reads the ARGs before the first FROM, with their defaults', () => {
    const text = [
      '# syntax=docker/dockerfile:1',
      'ARG BASE_IMAGE=python:3.12-slim',
      'arg QUOTED="node:20-alpine" SINGLE=\'busybox:1.36\'',
      'ARG NO_DEFAULT',
      'ARG EMPTY=',
      'ARG FIRST=debian:12 \\',
      '    CONTINUED=debian:12-slim',
      'FROM ${BASE_IMAGE}',
      'ARG AFTER_FROM=not-global',
    ].join('\n');
    expect(dockerfileArgDefaults(text)).toEqual({
      BASE_IMAGE: 'python:3.12-slim',
      QUOTED: 'node:20-alpine',
      SINGLE: 'busybox:1.36',
      EMPTY: '',
      FIRST: 'debian:12',
      CONTINUED: 'debian:12-slim',
    });
  });

  it('finds none in a Dockerfile without global ARGs', () => {
    expect(dockerfileArgDefaults('FROM scratch\nARG X=1\n')).toEqual({});
  });
});

describe('which official images the offline names stand in for', () => {
  const names = ['PYTHON_BASE_IMAGE', 'BUSYBOX_IMAGE', 'UNUSED_IMAGE'];

  it('takes a compose variable default unless the environment sets the variable', () => {
    const compose = { PYTHON_BASE_IMAGE: 'python:3.12-slim' };
    expect(officialImages(names, compose, [], {})).toEqual({ PYTHON_BASE_IMAGE: ['python:3.12-slim'] });
    expect(officialImages(names, compose, [], { PYTHON_BASE_IMAGE: 'my/python:3' })).toEqual({});
  });

  it('takes a build ARG default from every Dockerfile that declares it, once each', () => {
    const dockerfiles: Record<string, string>[] = [{ BUSYBOX_IMAGE: 'busybox:1.36' }, { BUSYBOX_IMAGE: 'busybox:1.36', OTHER: 'x' }, { BUSYBOX_IMAGE: 'busybox:musl' }];
    expect(officialImages(names, {}, dockerfiles, {})).toEqual({ BUSYBOX_IMAGE: ['busybox:1.36', 'busybox:musl'] });
  });

  it('ignores empty defaults and names the app does not use', () => {
    expect(officialImages(names, { PYTHON_BASE_IMAGE: '' }, [{ BUSYBOX_IMAGE: '' }], {})).toEqual({});
  });

  it('keeps what AIDD Bot resolved before build ARGs counted: its three compose variables', async () => {
    const app = await loadComposeApp(DEFAULT_COMPOSE_FILE);
    const wanted = officialImages(
      Object.keys(app.config.offlineBase!.images),
      interpolationDefaults(app.variables),
      app.services.map((service) => buildArgDefaults(app, service)),
      {},
    );
    expect(wanted).toEqual({ PYTHON_BASE_IMAGE: ['python:3.12-slim'], NODE_BASE_IMAGE: ['node:22-alpine'], POSTGRES_IMAGE: ['postgres:16-alpine'] });
  });
});

describe('stand-ins passed as build args', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-base-images-'));
  mkdirSync(path.join(dir, 'web'));
  writeFileSync(path.join(dir, 'web', 'Dockerfile'), 'ARG BUSYBOX_IMAGE=busybox:1.36\nARG BASE_IMAGE=python:3.12-slim\nFROM ${BUSYBOX_IMAGE}\n');
  writeFileSync(path.join(dir, 'web', 'Other.Dockerfile'), 'FROM scratch\n');
  const app = { dir } as ComposeApp;
  const service = (build?: Omit<NonNullable<ComposeService['build']>, 'args'> & { args?: Record<string, string | null> }): ComposeService => ({ name: 'web', build: build && { args: {}, ...build }, dependsOn: [], ports: [], envFiles: [] });
  const standIns = { BUSYBOX_IMAGE: 'aidd-offline-busybox:1', BASE_IMAGE: 'aidd-offline-base:1', POSTGRES_IMAGE: 'aidd-offline-postgres:1' };

  it('go to a build whose Dockerfile declares the ARG and whose compose args leave it alone', () => {
    expect(offlineBuildArgs(app, service({ context: 'web' }), standIns)).toEqual({ BUSYBOX_IMAGE: 'aidd-offline-busybox:1', BASE_IMAGE: 'aidd-offline-base:1' });
  });

  it('never override an arg the compose file sets, even one taken from the variable of the same name', () => {
    const expected = { BUSYBOX_IMAGE: 'aidd-offline-busybox:1' };
    expect(offlineBuildArgs(app, service({ context: 'web', args: { BASE_IMAGE: '${PYTHON_BASE_IMAGE:-python:3.12-slim}' } }), standIns)).toEqual(expected);
    expect(offlineBuildArgs(app, service({ context: 'web', args: { BASE_IMAGE: null } }), standIns)).toEqual(expected);
  });

  it('read the Dockerfile the build names, and nothing for a service without a build or a readable Dockerfile', () => {
    expect(offlineBuildArgs(app, service({ context: 'web', dockerfile: 'Other.Dockerfile' }), standIns)).toEqual({});
    expect(offlineBuildArgs(app, service(), standIns)).toEqual({});
    expect(offlineBuildArgs(app, service({ context: 'missing' }), standIns)).toEqual({});
  });
});

describe('the Hello Compose example', () => {
  const dir = path.join(REPO_ROOT, 'examples', 'hello-compose');

  it('names in aidd.yml offline-base only build ARGs its Dockerfile defaults to an official image', () => {
    const settings = parseYaml(readFileSync(path.join(dir, 'aidd.yml'), 'utf8')) as { 'offline-base': { images: Record<string, string> } };
    const defaults = dockerfileArgDefaults(readFileSync(path.join(dir, 'Dockerfile'), 'utf8'));
    for (const name of Object.keys(settings['offline-base'].images)) expect(defaults[name]).toMatch(/^[a-z]+:[\w.-]+$/);
  });

  it('has no compose variables at all', () => {
    expect(readFileSync(path.join(dir, 'docker-compose.yml'), 'utf8')).not.toContain('$');
  });
});

describe('the host-node stand-in', () => {
  const tag = hostNodeImageTag('aidd-offline-base:0123456789ab', 'v22.18.0', 'x64', '10.9.3');

  it('is named by the base, the Node.js version, the architecture and the npm version, the same each time', () => {
    expect(tag).toMatch(/^aidd-offline-node:[0-9a-f]{12}$/);
    expect(hostNodeImageTag('aidd-offline-base:0123456789ab', 'v22.18.0', 'x64', '10.9.3')).toBe(tag);
    const others = [
      hostNodeImageTag('aidd-offline-base:0123456789ab', 'v22.19.0', 'x64', '10.9.3'),
      hostNodeImageTag('aidd-offline-base:ba9876543210', 'v22.18.0', 'x64', '10.9.3'),
      hostNodeImageTag('aidd-offline-base:0123456789ab', 'v22.18.0', 'arm64', '10.9.3'),
      hostNodeImageTag('aidd-offline-base:0123456789ab', 'v22.18.0', 'x64', '11.0.0'),
      hostNodeImageTag('aidd-offline-base:0123456789ab', 'v22.18.0', 'x64', undefined),
    ];
    expect(new Set([tag, ...others]).size).toBe(others.length + 1);
  });
});

describe('the AIDD Bot example offline', async () => {
  const app = await loadComposeApp(DEFAULT_COMPOSE_FILE);
  const frontend = app.services.find((service) => service.name === 'frontend')!;
  const frontendDir = path.resolve(app.dir, frontend.build!.context);
  const hostBuild = app.config.offlineBase!.hostBuilds[0]!;

  it("gives the frontend the base with the toolkit's Node.js and builds it on the host, setting NEXT_BUILD=host", () => {
    expect(app.config.offlineBase!.images.NODE_BASE_IMAGE).toBe('host-node');
    expect(app.config.offlineBase!.hostBuilds).toHaveLength(1);
    expect(hostBuild).toMatchObject({ dir: 'frontend', output: '.next/standalone/server.js', set: { NEXT_BUILD: 'host' } });
    // What the Dockerfile runs for NEXT_BUILD=source: npm ci, then the build script.
    expect(hostBuild.run.map((argv) => argv.slice(0, 2))).toEqual([['npm', 'ci'], ['npm', 'run']]);
    expect(hostBuild.run.at(-1)).toEqual(['npm', 'run', 'build']);
    expect(path.resolve(app.dir, hostBuild.dir)).toBe(frontendDir);
  });

  it('sets values its env list allows, in a Dockerfile that declares NEXT_BUILD globally and checks for the output', () => {
    const nextBuild = app.config.env!.find((variable) => variable.name === 'NEXT_BUILD')!;
    expect(nextBuild.format).toEqual({ 'one-of': ['source', 'host'] });
    const dockerfile = readFileSync(path.join(frontendDir, 'Dockerfile'), 'utf8');
    expect(dockerfileArgDefaults(dockerfile)).toEqual({ BASE_IMAGE: 'node:22-alpine', NEXT_BUILD: 'source' });
    expect(dockerfile).toContain(`[ ! -f ${hostBuild.output} ]`);
  });

  it('keeps the output and the installed packages out of the sources, so an unchanged frontend is not built again', async () => {
    const runner = new Runner({ logger: createLogger({ prefix: 'test', quiet: true }) });
    for (const file of [hostBuild.output, '.next/cache/x', 'node_modules/next/package.json']) {
      expect((await runner.attempt({ argv: ['git', '-C', frontendDir, 'check-ignore', '--quiet', '--no-index', file], readOnly: true })).exitCode, file).toBe(0);
    }
  });

  it('hands NEXT_BUILD to the frontend build through the compose arg, not as a stand-in build arg: compose args win over stand-ins', () => {
    expect(frontend.build!.args).toEqual({ BASE_IMAGE: '${NODE_BASE_IMAGE:-node:22-alpine}', NEXT_BUILD: '${NEXT_BUILD:-source}' });
    const resolved = { PYTHON_BASE_IMAGE: 'aidd-offline-base:1', NODE_BASE_IMAGE: 'aidd-offline-node:1', POSTGRES_IMAGE: 'aidd-offline-postgres:1', ...hostBuild.set };
    // Both of the Dockerfile's global ARGs are set by the compose file, so no stand-in is added as a build arg.
    expect(offlineBuildArgs(app, frontend, resolved)).toEqual({});
    const plan = (vars: Record<string, string | undefined>, baseImages: Record<string, string>) =>
      planImage(app, frontend, {
        registry: 'ghcr.io',
        owner: 'acme',
        revision: { sha: 'a'.repeat(40), dirty: false, committedAt: '2030-01-01T00:00:00Z' },
        tags: ['latest'],
        source: undefined,
        now: '2030-01-01T00:00:00Z',
        vars,
        baseImages,
      }).buildArgs;
    expect(plan(interpolationVars(app, resolved), resolved)).toEqual({ BASE_IMAGE: 'aidd-offline-node:1', NEXT_BUILD: 'host' });
    expect(plan({}, {})).toEqual({ BASE_IMAGE: 'node:22-alpine', NEXT_BUILD: 'source' });
  });
});
