// Reading compose files as compose does. Expected documents were compared with docker-compose 1.29.2
// (`docker-compose -f ... config`, and `config --no-interpolate` for the documents as written) on the
// fixtures in test/fixtures/compose/. 1.29 prints its own normal form (absolute paths, long-form ports,
// sorted keys); the expectations here are the same entries in the form the files write them, and the
// comments say where 1.29 differs from the Compose spec, which this reader follows.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { composeConfigCommand, loadComposeApp } from '../../lib/app/compose.ts';
import { mergeDocuments, readComposeFiles, releaseCompose, withOverrideFile } from '../../lib/app/compose-file.ts';
import { EXIT, UsageError } from '../../lib/core/cli.ts';
import type { Command, Result, Runner } from '../../lib/core/exec.ts';
import { REPO_ROOT } from '../../lib/app/target.ts';
import { thrown } from './thrown.ts';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'compose');
const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
const read = (files: string[], vars: Record<string, string> = {}) => readComposeFiles(files.map((file) => fixture(file)), { vars, onMissing: 'error' });

function tempDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-compose-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

describe('YAML merge keys', () => {
  it('give each service what the anchor holds; a key written next to <<: wins whole (docker-compose 1.29.2)', () => {
    const { raw, interpolated } = read(['merge-keys/docker-compose.yml']);
    const build = { context: './app', args: { BASE_IMAGE: 'python:3.12-slim' } };
    expect(interpolated.services).toEqual({
      api: { build, restart: 'unless-stopped', environment: { SHARED: '1' }, command: ['serve'] },
      worker: { build, restart: 'unless-stopped', environment: { ROLE: 'worker' } },
    });
    // config --no-interpolate
    expect(raw.services.worker!.build).toEqual({ context: './app', args: { BASE_IMAGE: '${BASE_IMAGE:-python:3.12-slim}' } });
    // 1.29 drops top-level x- fields from its output; the spec keeps them, and so does the release file.
    expect(raw['x-app']).toMatchObject({ restart: 'unless-stopped' });
  });

  it('make both services buildable apps', async () => {
    const app = await loadComposeApp(fixture('merge-keys', 'docker-compose.yml'), { vars: {} });
    expect(app.services.map((service) => [service.name, service.build])).toEqual([
      ['api', { context: './app', args: { BASE_IMAGE: '${BASE_IMAGE:-python:3.12-slim}' } }],
      ['worker', { context: './app', args: { BASE_IMAGE: '${BASE_IMAGE:-python:3.12-slim}' } }],
    ]);
  });
});

describe('extends', () => {
  it('merges the extended service under the local one, in this file and from another directory (docker-compose 1.29.2)', () => {
    const { interpolated, raw } = read(['extends/docker-compose.yml']);
    const base = { image: 'example/base:1', environment: { LEVEL: 'base' }, ports: ['8080:80'] };
    expect(interpolated.services.base).toEqual(base);
    expect(interpolated.services.web).toEqual({ image: 'example/base:1', environment: { LEVEL: 'base', ROLE: 'web' }, ports: ['8080:80', '8443:443'] });
    expect(interpolated.services.chain).toEqual({ ...interpolated.services.web, command: ['run'] });
    // 1.29: context /.../extends/common/worker, volumes /.../extends/common/data:/data and cache:/cache (in another order).
    expect(interpolated.services.worker).toEqual({
      build: { context: './common/worker', args: { FROM_BASE: '1', OWN: '2' } },
      environment: { LEVEL: 'common', ROLE: 'worker' },
      volumes: ['./common/data:/data', 'cache:/cache'],
    });
    expect(raw.services.worker).toEqual(interpolated.services.worker);
    expect(Object.values(raw.services).some((service) => 'extends' in service)).toBe(false);
  });
});

describe('several files', () => {
  it('merge in order by the compose rules (docker-compose 1.29.2)', () => {
    const { files, interpolated } = read(['two-files/compose.yml', 'two-files/production.yml']);
    expect(files).toEqual([fixture('two-files', 'compose.yml'), fixture('two-files', 'production.yml')]);
    expect(Object.keys(interpolated.services)).toEqual(['api', 'db', 'cache', 'web']);
    expect(interpolated.services.api).toEqual({
      build: { context: './app', args: { A: '1', B: '3', C: '4' }, dockerfile: 'Production.Dockerfile' },
      image: 'example/api:base',
      command: 'run production',
      // Two KEY=VALUE lists would stay a list; a list and a mapping become a mapping.
      environment: { X: '1', Y: '3', Z: '4' },
      labels: { first: 'a', second: 'b' },
      // 1.29 prints the first two in long form: {published: 8000, target: 8000}, {published: 9000, target: 9000}.
      ports: ['8000:8000', '9000:9000', '127.0.0.1:9001:9000'],
      // 1.29 prints absolute host paths with :rw.
      volumes: ['./production-data:/data', 'logs:/logs', './more:/more'],
      depends_on: { db: { condition: 'service_started' }, cache: { condition: 'service_started' } },
      healthcheck: { test: ['CMD', 'true'], interval: '5s', retries: 3 },
      networks: { front: null, back: {} },
      dns: ['8.8.8.8', '1.1.1.1'],
      expose: ['1', '2'],
      profiles: ['base', 'production'],
    });
    expect(interpolated.services.web).toEqual({ build: './web' });
    expect(interpolated.networks).toEqual({ front: { driver: 'bridge' }, back: {} });
  });

  it('replace command, entrypoint and healthcheck.test whole, and merge a top-level volume (the spec; 1.29 replaces it)', () => {
    const merged = mergeDocuments(
      { services: { a: { entrypoint: ['a', 'b'], healthcheck: { test: ['CMD', 'a'], interval: '1s' } } }, volumes: { data: { driver: 'local', labels: ['x=1'] } } },
      { services: { a: { entrypoint: ['c'], healthcheck: { test: ['CMD', 'c'] } } }, volumes: { data: { labels: { y: '2' } } } },
    );
    expect(merged).toEqual({
      services: { a: { entrypoint: ['c'], healthcheck: { test: ['CMD', 'c'], interval: '1s' } } },
      volumes: { data: { driver: 'local', labels: { x: '1', y: '2' } } },
    });
  });

  it('merge env files, secrets and configs by path or target, and logging only for the same driver', () => {
    const merged = mergeDocuments(
      { services: { a: { env_file: ['.env', 'a.env'], secrets: ['s1', { source: 's2', target: '/x' }], configs: ['c1'], logging: { driver: 'json-file', options: { 'max-size': '1m' } }, environment: ['A=1', 'B'] } } },
      { services: { a: { env_file: { path: 'a.env', required: false }, secrets: [{ source: 's3', target: '/run/secrets/s1' }], configs: ['c2'], logging: { driver: 'syslog' }, environment: ['B=2'] } } },
    );
    expect(merged.services).toEqual({
      a: {
        env_file: ['.env', { path: 'a.env', required: false }],
        secrets: [{ source: 's3', target: '/run/secrets/s1' }, { source: 's2', target: '/x' }],
        configs: ['c1', 'c2'],
        logging: { driver: 'syslog' },
        environment: ['A=1', 'B=2'],
      },
    });
  });

  it("apply Compose v2's !reset and !override (1.29 cannot read these tags)", () => {
    const dir = tempDir({
      'base.yml': 'services:\n  app:\n    image: a\n    ports: ["80:80"]\n    environment: {FOO: bar, KEEP: "1"}\n    dns: [1.1.1.1]\n',
      'over.yml': 'services:\n  app:\n    ports: !override ["443:443"]\n    environment:\n      FOO: !reset null\n    dns: !reset []\n',
    });
    const { raw } = readComposeFiles([path.join(dir, 'base.yml'), path.join(dir, 'over.yml')], { vars: {} });
    expect(raw.services.app).toEqual({ image: 'a', ports: ['443:443'], environment: { KEEP: '1' } });
  });
});

describe('the override file compose reads on its own', () => {
  it('is added next to one default-named file (docker-compose 1.29.2)', () => {
    const { files, interpolated } = read(['override/compose.yaml']);
    expect(files).toEqual([fixture('override', 'compose.yaml'), fixture('override', 'compose.override.yaml')]);
    expect(interpolated.services.app).toEqual({ image: 'example/app:1', environment: { MODE: 'development', KEEP: '1' }, ports: ['3000:3000'] });
  });

  it('is not added to files named on purpose, nor to a file with another name', () => {
    expect(withOverrideFile([fixture('override', 'compose.yaml'), fixture('two-files', 'production.yml')])).toHaveLength(2);
    const dir = tempDir({ 'docker-compose.registry.yml': 'services: {}\n', 'docker-compose.override.yml': 'services: {}\n' });
    expect(withOverrideFile([path.join(dir, 'docker-compose.registry.yml')])).toEqual([path.join(dir, 'docker-compose.registry.yml')]);
  });

  it('must be one: 1.29 refuses two ("Multiple override files found"), v2 silently takes the first', () => {
    const dir = tempDir({ 'docker-compose.yml': 'services: {}\n', 'docker-compose.override.yml': 'services: {}\n', 'compose.override.yaml': 'services: {}\n' });
    const error = thrown(() => withOverrideFile([path.join(dir, 'docker-compose.yml')]));
    expect(error.exitCode).toBe(EXIT.usage);
    expect(error.message).toBe(
      `${path.join(dir, 'compose.override.yaml')} and ${path.join(dir, 'docker-compose.override.yml')} are both override files of ${path.join(dir, 'docker-compose.yml')}; keep one (compose v1 refuses both, v2 reads only the first)`,
    );
  });
});

describe('interpolation while reading', () => {
  it('keeps the document as written beside the interpolated one, and lists the references', () => {
    const { raw, interpolated, variables } = read(['interpolation/docker-compose.yml'], { OWNER: 'acme', EMPTY: '' });
    expect(raw.services.app!.image).toBe('${REGISTRY:-ghcr.io}/$OWNER/app:${TAG-latest}');
    expect(interpolated.services.app!.image).toBe('ghcr.io/acme/app:latest');
    expect(variables.filter((reference) => reference.required).map((reference) => reference.name)).toEqual(['OWNER', 'OWNER', 'EMPTY']);
  });

  it('names the file, the key and the variable of a missing required one, or reads it as empty', () => {
    const file = fixture('interpolation', 'required.yml');
    expect(thrown(() => readComposeFiles([file], { vars: {}, onMissing: 'error' })).message).toBe(
      `${file} services.app.environment.TOKEN: variable TOKEN is not set (set TOKEN in .env)`,
    );
    expect(readComposeFiles([file], { vars: {}, onMissing: 'empty' }).interpolated.services.app!.environment).toEqual({ TOKEN: '' });
  });
});

describe('files compose would refuse', () => {
  const bad = (name: string) => fixture('bad', name);
  it.each([
    ['not-yaml.yml', `compose file ${bad('not-yaml.yml')} is not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ] at line 2, column 1:`],
    ['no-services.yml', `compose file ${bad('no-services.yml')} has no services: section`],
    ['services-not-mapping.yml', `compose file ${bad('services-not-mapping.yml')}: services must be a mapping of service names`],
    ['service-not-mapping.yml', `compose file ${bad('service-not-mapping.yml')}: services.app must be a mapping`],
    ['extends-missing-service.yml', `compose file ${bad('extends-missing-service.yml')}: services.app.extends: service nowhere is not in ${bad('extends-missing-service.yml')}`],
    ['extends-missing-file.yml', `compose file ${bad('extends-missing-file.yml')}: services.app.extends: file missing.yml does not exist`],
    ['extends-itself.yml', `compose file ${bad('extends-itself.yml')}: services.app.extends: circular extends app (${bad('extends-itself.yml')}) -> app (${bad('extends-itself.yml')})`],
    ['unknown-anchor.yml', `compose file ${bad('unknown-anchor.yml')}: services.app.<<: unknown anchor *defaults (line 3)`],
    ['invalid-interpolation.yml', `${bad('invalid-interpolation.yml')} services.app.image: invalid interpolation "cost $ 5"; write $$ for a literal $`],
  ])('%s: one line naming the file and the key, exit 2', (name, message) => {
    const error = thrown(() => readComposeFiles([bad(name)], { vars: {} }));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.exitCode).toBe(EXIT.usage);
    expect(error.message).toBe(message);
  });

  it('a file that cannot be read', () => {
    expect(thrown(() => readComposeFiles(['/nonexistent/docker-compose.yml'], { vars: {} })).message).toBe(
      'compose file /nonexistent/docker-compose.yml cannot be read; pass --compose PATH to your docker-compose.yml',
    );
  });
});

describe('the release compose file', () => {
  const { raw } = read(['release/docker-compose.yml'], { IMAGE_OWNER: 'me' });
  const text = releaseCompose(raw, { api: 'reg.example/me/app-api@sha256:aa' });
  // As PyYAML (compose v1) reads it.
  const released = parseYaml(text, { version: '1.1' }) as typeof raw;

  it("pins the service's image and drops its build: the server has no build context", () => {
    expect(released.services.api!.image).toBe('reg.example/me/app-api@sha256:aa');
    expect(released.services.api).not.toHaveProperty('build');
  });

  it('keeps everything else as written: networks, volumes, profiles, configs, secrets, labels, x- fields, other builds', () => {
    const { build: _build, ...api } = raw.services.api!;
    expect(released).toEqual({ ...raw, services: { ...raw.services, api: { ...api, image: 'reg.example/me/app-api@sha256:aa' } } });
    expect(released.services.tools).toEqual({ build: './tools', profiles: ['tools'], volumes: ['data:/data'] });
    expect(released['x-deploy-note']).toBe('pinned by digest');
    // Strings YAML 1.1 would read as a boolean and a number stay strings.
    expect(released.services.api!.environment).toEqual({ TZ: 'on', PORT: '22:22' });
  });

  it('reads back the same under docker-compose 1.29.2 but for the pinned image and build, and changes nothing unpinned', () => {
    // `docker-compose -f release.yml config` and `-f docker-compose.yml config` differ in exactly those two keys.
    expect(parseYaml(releaseCompose(raw, {}), { version: '1.1' })).toEqual(raw);
  });
});

describe('Compose v2', () => {
  it("merges the files itself with variables, paths and env files left as written", () => {
    expect(composeConfigCommand(['/a/compose.yml', '/a/prod.yml'], '/a')).toEqual({
      argv: [
        'docker', 'compose', '--project-name', 'a', '--project-directory', '/a', '--file', '/a/compose.yml', '--file', '/a/prod.yml',
        '--profile', '*', 'config', '--no-interpolate', '--no-normalize', '--no-path-resolution', '--no-env-resolution', '--format', 'json',
      ],
      readOnly: true,
      timeoutMs: 30_000,
    });
  });

  const result = (exitCode: number, stdout = ''): Result => ({ exitCode, stdout, stderr: '', skipped: false, durationMs: 1 });
  const runner = (v2: boolean, config: Result): Runner => {
    const attempt = async (command: Command) => (command.argv.includes('version') ? result(v2 ? 0 : 1, '2.30.0') : config);
    return { attempt } as unknown as Runner;
  };
  const file = fixture('override', 'compose.yaml');
  const v2Document = { name: 'override', services: { app: { image: 'example/app:1', environment: { MODE: 'development', KEEP: '1' }, ports: [{ target: 3000, published: '3000' }] } } };

  it('gives the document as written where `docker compose` works, without the project name v2 adds', async () => {
    const app = await loadComposeApp(file, { vars: {}, runner: runner(true, result(0, JSON.stringify(v2Document))) });
    expect(app.raw).toEqual({ services: v2Document.services });
    expect(app.services[0]!.ports).toEqual(['3000:3000']);
  });

  it("falls back to the toolkit's reader with v1 only, when v2's config fails, or when it finds other services", async () => {
    const own = (await loadComposeApp(file, { vars: {} })).raw;
    for (const fake of [runner(false, result(0, '{}')), runner(true, result(1)), runner(true, result(0, JSON.stringify({ services: { other: {} } })))]) {
      expect((await loadComposeApp(file, { vars: {}, runner: fake })).raw).toEqual(own);
    }
  });
});
