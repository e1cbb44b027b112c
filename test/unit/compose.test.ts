import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { baseImageTag, derivedImageTag } from '../../lib/build/base-images.ts';
import { composeCommand, defaultProjectName, loadComposeApp, parseContainerStatus } from '../../lib/app/compose.ts';
import { interpolationDefaults } from '../../lib/app/interpolate.ts';
import { parsePublishedPort } from '../../lib/app/local-stack.ts';
import { DEFAULT_COMPOSE_FILE } from '../../lib/app/target.ts';

const app = await loadComposeApp(DEFAULT_COMPOSE_FILE);

describe('the reference compose app', () => {
  it('has the four AIDD Bot services, three of them built from source, all with healthchecks', () => {
    expect(app.services.map((service) => service.name).sort()).toEqual(['api', 'bot', 'frontend', 'postgres']);
    expect(app.services.filter((service) => service.build).map((service) => service.name).sort()).toEqual(['api', 'bot', 'frontend']);
    expect(app.services.every((service) => service.healthcheck)).toBe(true);
  });

  it('reads the toolkit settings from aidd.yml next to the compose file', () => {
    expect(app.config.imageName).toBe('aidd-{service}');
    expect(app.config.offlineBase?.images).toHaveProperty('POSTGRES_IMAGE');
    expect(app.config.smoke.map((check) => check.service)).toEqual(expect.arrayContaining(['api', 'frontend']));
  });

  it('reads services from the interpolated files, build args as written', async () => {
    const api = app.services.find((service) => service.name === 'api')!;
    expect(api).toMatchObject({ build: { context: './api', args: { BASE_IMAGE: '${PYTHON_BASE_IMAGE:-python:3.12-slim}' } }, dependsOn: ['postgres'], envFiles: [] });
    const registry = await loadComposeApp(path.join(app.dir, 'docker-compose.registry.yml'), { vars: { IMAGE_OWNER: 'acme', IMAGE_TAG: 'v1' } });
    expect(registry.services.find((service) => service.name === 'api')!.image).toBe('ghcr.io/acme/aidd-api:v1');
  });

  it('names an official default for every image variable it can replace offline', () => {
    const defaults = interpolationDefaults(app.variables);
    for (const variable of Object.keys(app.config.offlineBase!.images)) expect(defaults[variable]).toMatch(/^[a-z]+:[\w.-]+$/);
  });
});

describe('services of any compose app', () => {
  it('take env_file entries, depends_on in both forms, a build in both forms and valueless build args', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-compose-app-'));
    writeFileSync(
      path.join(dir, 'docker-compose.yml'),
      'services:\n  web:\n    build: ./web\n    env_file: [.env, {path: extra.env, required: false}]\n    depends_on: [db]\n' +
        '  db:\n    build:\n      context: ./db\n      dockerfile: Db.Dockerfile\n      args: [FROM_ENV, "SET=${TAG:-1}"]\n    ports: ["${PORT:-5432}:5432"]\n',
    );
    const app = await loadComposeApp([path.join(dir, 'docker-compose.yml')], { vars: { PORT: '6543' } });
    expect(app.files).toEqual([path.join(dir, 'docker-compose.yml')]);
    expect(app.services).toEqual([
      { name: 'web', build: { context: './web', args: {} }, ports: [], dependsOn: ['db'], envFiles: ['.env', 'extra.env'] },
      { name: 'db', build: { context: './db', dockerfile: 'Db.Dockerfile', args: { FROM_ENV: null, SET: '${TAG:-1}' } }, ports: ['6543:5432'], dependsOn: [], envFiles: [] },
    ]);
    expect(app.config.imageName).toBe('{service}');
  });
});

describe('compose helpers', () => {
  it('derives the project name like compose does', () => {
    expect(defaultProjectName('/srv/AIDD Bot.v2')).toBe('aiddbotv2');
    expect(defaultProjectName('/srv/aidd-bot')).toBe('aidd-bot');
  });

  it('builds compose argv for both CLI spellings', () => {
    const target = { files: ['/a/docker-compose.yml'], projectName: 'p', projectDir: '/a', envFile: '/a/.env' };
    expect(composeCommand({ ...target, cli: ['docker', 'compose'] }, ['up', '-d']).argv).toEqual([
      'docker', 'compose', '--project-name', 'p', '--project-directory', '/a', '--file', '/a/docker-compose.yml', '--env-file', '/a/.env', 'up', '-d',
    ]);
    expect(composeCommand({ ...target, cli: ['docker-compose'] }, ['ps']).argv[0]).toBe('docker-compose');
  });

  it('parses container status lines and published ports', () => {
    expect(parseContainerStatus('{"service":"api","state":"running","health":"healthy"}\n')).toEqual([
      { service: 'api', state: 'running', health: 'healthy' },
    ]);
    expect(parsePublishedPort('0.0.0.0:8080\n[::]:8080\n')).toBe('127.0.0.1:8080');
    expect(parsePublishedPort('127.0.0.1:18000\n')).toBe('127.0.0.1:18000');
    expect(parsePublishedPort('')).toBeUndefined();
  });
});

describe('offline base image tags', () => {
  it('depend on the package set only, not its order', () => {
    expect(baseImageTag(['b', 'a'])).toBe(baseImageTag(['a', 'b']));
    expect(baseImageTag(['a'])).not.toBe(baseImageTag(['a', 'b']));
    expect(baseImageTag(['a'])).toMatch(/^aidd-offline-base:[0-9a-f]{12}$/);
  });

  it('change when the stand-in Dockerfile changes', () => {
    const one = derivedImageTag('POSTGRES_IMAGE', 'aidd-offline-base:1', 'FROM x');
    expect(one).toMatch(/^aidd-offline-postgres:[0-9a-f]{12}$/);
    expect(derivedImageTag('POSTGRES_IMAGE', 'aidd-offline-base:1', 'FROM y')).not.toBe(one);
  });
});

