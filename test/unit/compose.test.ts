import { describe, expect, it } from 'vitest';
import { baseImageTag, derivedImageTag } from '../../lib/build/base-images.ts';
import { composeCommand, defaultProjectName, interpolationDefaults, loadComposeApp, parseContainerStatus } from '../../lib/app/compose.ts';
import { parsePublishedPort } from '../../lib/app/local-stack.ts';
import { DEFAULT_COMPOSE_FILE } from '../../lib/app/target.ts';

describe('the reference compose app', () => {
  const app = loadComposeApp(DEFAULT_COMPOSE_FILE);

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

  it('names an official default for every image variable it can replace offline', () => {
    const defaults = interpolationDefaults(app.text);
    for (const variable of Object.keys(app.config.offlineBase!.images)) expect(defaults[variable]).toMatch(/^[a-z]+:[\w.-]+$/);
  });
});

describe('compose helpers', () => {
  it('reads ${VAR:-default} and ${VAR-default} defaults, first one wins', () => {
    expect(interpolationDefaults('a: ${A:-x:1}\nb: ${B-y}\nc: ${A:-other}\nd: ${C:?set C}')).toEqual({ A: 'x:1', B: 'y' });
  });

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

