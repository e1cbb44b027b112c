import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { buildArgDefaults, dockerfileArgDefaults, offlineBuildArgs, officialImages } from '../../lib/build/base-images.ts';
import { loadComposeApp, type ComposeApp, type ComposeService } from '../../lib/app/compose.ts';
import { interpolationDefaults } from '../../lib/app/interpolate.ts';
import { DEFAULT_COMPOSE_FILE, REPO_ROOT } from '../../lib/app/target.ts';

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
    expect(wanted).toEqual({ PYTHON_BASE_IMAGE: ['python:3.12-slim'], NODE_BASE_IMAGE: ['node:20-alpine'], POSTGRES_IMAGE: ['postgres:16-alpine'] });
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
