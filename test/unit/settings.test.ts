// aidd.yml: every kind of mistake is one line naming the file and the key (exit 2), and the JSON Schema
// published for editors is the one the toolkit checks with.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT, UsageError } from '../../lib/core/cli.ts';
import { loadSettings, settingsJsonSchema } from '../../lib/app/settings.ts';
import { REPO_ROOT } from '../../lib/app/target.ts';

const SERVICES = ['web', 'worker', 'db'];

function settingsDir(text: string | undefined): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-settings-'));
  if (text !== undefined) writeFileSync(path.join(dir, 'aidd.yml'), text);
  return dir;
}

function load(text: string | undefined) {
  return loadSettings(settingsDir(text), SERVICES, (service) => (service === 'web' ? ['db'] : []));
}

/** The one-line error for a file, with the temporary directory taken out. */
function errorOf(text: string): string {
  const dir = settingsDir(text);
  try {
    loadSettings(dir, SERVICES, () => []);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(EXIT.usage);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    return message.replace(`${dir}/`, '');
  }
  throw new Error('no error');
}

describe('aidd.yml', () => {
  it('is optional: without it every setting has its default', () => {
    expect(load(undefined)).toEqual({
      imageName: '{service}',
      smoke: [],
      offlineBase: undefined,
      migrate: undefined,
      backup: undefined,
      env: undefined,
      proxy: { enabled: true, http: [], sites: [] },
      target: 'compose',
      swarm: { replicas: {}, publish: 'ingress', endpointMode: 'vip', secrets: {} },
    });
  });

  it('reads the swarm target and refuses replicas of a service the compose file lacks', () => {
    expect(load('target: swarm\nswarm: {replicas: {web: 2}, publish: host, endpoint-mode: dnsrr}\n')).toMatchObject({
      target: 'swarm',
      swarm: { replicas: { web: 2 }, publish: 'host', endpointMode: 'dnsrr' },
    });
    expect(() => load('swarm: {replicas: {nosuch: 2}}\n')).toThrow(/swarm\.replicas\.nosuch: "nosuch" is not a service of the compose file/);
    expect(() => load('target: kubernetes\n')).toThrow(/target/);
  });

  it('reads every section', () => {
    const settings = load(`
image-name: shop-{service}
offline-base: {debian-packages: [python3], images: {BASE_IMAGE: base}}
smoke: [{name: home, service: web, port: 8080, path: /, expect: {status: 200, contains: Hello}}]
migrate: {service: web, command: [migrate, --yes]}
backup: {service: db, command: pg_dump, restore: pg_restore}
env: [{name: GREETING, description: What the page says., required: [production], format: {one-of: [hi, hello]}}]
`);
    expect(settings.imageName).toBe('shop-{service}');
    expect(settings.offlineBase).toEqual({ debianPackages: ['python3'], images: { BASE_IMAGE: 'base' }, hostBuilds: [] });
    expect(settings.smoke).toEqual([{ name: 'home', service: 'web', port: 8080, path: '/', expect: { status: 200, contains: 'Hello' } }]);
    expect(settings.migrate).toEqual({ service: 'web', command: ['migrate', '--yes'], needs: ['db'] });
    expect(settings.backup).toEqual({ service: 'db', command: 'pg_dump', extension: 'dump', restore: 'pg_restore' });
    expect(settings.env).toHaveLength(1);
  });

  it('routes the smoke-checked ports, proxy.http and the sites through the proxy, each port once', () => {
    const settings = load(`
smoke: [{name: home, service: web, port: 8080, path: /}, {name: again, service: web, port: 8080, path: /health}]
proxy:
  http: [{service: worker, port: 9000}, {service: web, port: 8080}]
  sites: [{domain: shop.example.com, service: web, port: 8080}, {domain: admin.example.com, service: worker, port: 9001, tls: internal, listen: "127.0.0.1:8443"}]
`);
    expect(settings.proxy).toEqual({
      enabled: true,
      http: [
        { service: 'web', port: 8080, health: '/health' },
        { service: 'worker', port: 9000, health: '/' },
        { service: 'worker', port: 9001, health: '/' },
      ],
      sites: [
        { domain: 'shop.example.com', service: 'web', port: 8080, tls: 'auto' },
        { domain: 'admin.example.com', service: 'worker', port: 9001, tls: 'internal', listen: '127.0.0.1:8443' },
      ],
    });
    expect(load('proxy: {enabled: false}\n').proxy.enabled).toBe(false);
  });

  it("has the proxy check the path proxy.http gives, else a smoke-checked path naming health, else the port's first smoke-checked path, else /", () => {
    const health = (text: string) => load(text).proxy.http.map((route) => route.health);
    expect(health('smoke: [{name: a, service: web, port: 80, path: /}, {name: b, service: web, port: 80, path: /healthz}]\nproxy: {http: [{service: web, port: 80, health: /ready}]}\n')).toEqual(['/ready']);
    expect(health('smoke: [{name: a, service: web, port: 80, path: /}, {name: b, service: web, port: 80, path: /healthz}]\n')).toEqual(['/healthz']);
    expect(health('smoke: [{name: a, service: web, port: 80, path: /stats}, {name: b, service: web, port: 80, path: /about}]\n')).toEqual(['/stats']);
    // A smoke-checked path on another port of the service is not this port's.
    expect(health('smoke: [{name: a, service: web, port: 81, path: /health}]\nproxy: {http: [{service: web, port: 80}]}\n')).toEqual(['/health', '/']);
  });

  it.each([
    ['an underscore', 'shop_example.com'],
    ['a scheme', 'https://shop.example.com'],
    ['a port', 'shop.example.com:443'],
    ['a leading dash', '-shop.example.com'],
    ['a label longer than 63 characters', `${'a'.repeat(64)}.example.com`],
  ])('refuses a site domain with %s, naming proxy.sites[0].domain', (_, domain) => {
    expect(errorOf(`proxy: {sites: [{domain: "${domain}", service: web, port: 80}]}\n`)).toMatch(/^aidd\.yml: proxy\.sites\[0\]\.domain: Invalid string: must match pattern /);
  });

  it('refuses a site listen address that is a host name, naming proxy.sites[0].listen', () => {
    expect(errorOf('proxy: {sites: [{domain: a.example.com, service: web, port: 80, listen: "localhost:8443"}]}\n')).toMatch(/^aidd\.yml: proxy\.sites\[0\]\.listen: Invalid string: must match pattern /);
  });

  it.each([
    ['an unknown top-level key', 'image-nam: x\n', 'aidd.yml: the top level: unknown key "image-nam"; allowed: image-name, offline-base, smoke, migrate, backup, proxy, env, target, swarm'],
    ['an unknown key in a check', 'smoke: [{name: a, service: web, port: 80, path: /, expec: {}}]\n', 'aidd.yml: smoke[0]: unknown key "expec"; allowed: name, service, port, path, expect'],
    ['an unknown key deeper down', 'smoke: [{name: a, service: web, port: 80, path: /, expect: {code: 200}}]\n', 'aidd.yml: smoke[0].expect: unknown key "code"; allowed: status, json, json-keys, contains, report'],
    ['a wrong type', 'smoke: [{name: a, service: web, port: "80", path: /}]\n', 'aidd.yml: smoke[0].port: expected number, received string'],
    ['a missing key', 'smoke: [{name: a, service: web, path: /}]\n', 'aidd.yml: smoke[0].port: expected number, received undefined'],
    ['a path without its slash', 'smoke: [{name: a, service: web, port: 80, path: health}]\n', 'aidd.yml: smoke[0].path: Invalid string: must start with "/"'],
    ['a smoke check on a service that does not exist', 'smoke: [{name: a, service: api, port: 80, path: /}]\n', 'aidd.yml: smoke[0].service: "api" is not a service of the compose file; services: web, worker, db'],
    ['a migration on a service that does not exist', 'migrate: {service: api, command: [migrate]}\n', 'aidd.yml: migrate.service: "api" is not a service of the compose file; services: web, worker, db'],
    ['a backup on a service that does not exist', 'backup: {service: postgres, command: pg_dump}\n', 'aidd.yml: backup.service: "postgres" is not a service of the compose file; services: web, worker, db'],
    ['a migration without a command', 'migrate: {service: web}\n', 'aidd.yml: migrate.command: expected array, received undefined'],
    ['an unknown format', 'env: [{name: A, description: x, format: colour}]\n', 'aidd.yml: env[0].format: must be one of text, url, port, positive-integer, lowercase-owner, password, image-digest, ip-address, host, registry-host, image-reference, image-tag, identifier, unix-user, user-name, absolute-path, token, or {pattern, describe}, or {one-of: [...]}; see schema/aidd.schema.json'],
    ['an unknown target', 'env: [{name: A, description: x, targets: [staging]}]\n', 'aidd.yml: env[0].targets[0]: must be one of local, production'],
    ['a bad required', 'env: [{name: A, description: x, required: yes}]\n', 'aidd.yml: env[0].required: must be true, false or a list of targets (local, production); see schema/aidd.schema.json'],
    ['a variable listed twice', 'env: [{name: A, description: x}, {name: A, description: y}]\n', 'aidd.yml: env[1].name: A is listed twice'],
    ['required-when naming an unknown variable', 'env: [{name: A, description: x, required-when: {name: B, equals: "1"}}]\n', 'aidd.yml: env[0].required-when.name: B is not in env'],
    ['a pattern that is not a regular expression', 'env: [{name: A, description: x, format: {pattern: "(", describe: y}}]\n', 'aidd.yml: env[0].format.pattern: not a valid regular expression'],
    ['a variable name compose cannot interpolate', 'env: [{name: 1A, description: x}]\n', 'aidd.yml: env[0].name: Invalid string: must match pattern /^[A-Za-z_][A-Za-z0-9_]*$/'],
    ['a list instead of a mapping', '- image-name\n', 'aidd.yml: the top level: expected object, received array'],
    ['an unknown key under proxy', 'proxy: {enable: false}\n', 'aidd.yml: proxy: unknown key "enable"; allowed: enabled, http, sites'],
    ['an unknown key in a proxy.http route', 'proxy: {http: [{service: web, port: 80, path: /}]}\n', 'aidd.yml: proxy.http[0]: unknown key "path"; allowed: service, port, health'],
    ['a proxy.http route to a service that does not exist', 'proxy: {http: [{service: api, port: 80}]}\n', 'aidd.yml: proxy.http[0].service: "api" is not a service of the compose file; services: web, worker, db'],
    ['a site on a service that does not exist', 'proxy: {sites: [{domain: shop.example.com, service: api, port: 80}]}\n', 'aidd.yml: proxy.sites[0].service: "api" is not a service of the compose file; services: web, worker, db'],
    ['a health path without its slash', 'proxy: {http: [{service: web, port: 80, health: ready}]}\n', 'aidd.yml: proxy.http[0].health: Invalid string: must start with "/"'],
    ['an unknown tls mode', 'proxy: {sites: [{domain: shop.example.com, service: web, port: 80, tls: self-signed}]}\n', 'aidd.yml: proxy.sites[0].tls: must be one of auto, internal'],
  ])('refuses %s in one line naming the key', (_, text, message) => {
    expect(errorOf(text)).toBe(message);
  });

  it('reads the host builds of offline-base, none when it lists none', () => {
    const offlineBase = (hostBuilds: string) => load(`offline-base: {debian-packages: [nodejs], images: {NODE_IMAGE: host-node}${hostBuilds}}\n`).offlineBase;
    expect(offlineBase(', host-builds: [{dir: web, run: [[npm, ci], [npm, run, build]], output: dist/index.html, set: {WEB_BUILD: host, EMPTY: ""}}]')).toEqual({
      debianPackages: ['nodejs'],
      images: { NODE_IMAGE: 'host-node' },
      hostBuilds: [{ dir: 'web', run: [['npm', 'ci'], ['npm', 'run', 'build']], output: 'dist/index.html', set: { WEB_BUILD: 'host', EMPTY: '' } }],
    });
    expect(offlineBase('')?.hostBuilds).toEqual([]);
  });

  it.each([
    ['a host build without output', '{dir: web, run: [[make]], set: {A: b}}', 'aidd.yml: offline-base.host-builds[0].output: expected string, received undefined'],
    ['a host build without commands', '{dir: web, run: [], output: o, set: {A: b}}', 'aidd.yml: offline-base.host-builds[0].run: Too small: expected array to have >=1 items'],
    ['a host build with an empty command', '{dir: web, run: [[make], []], output: o, set: {A: b}}', 'aidd.yml: offline-base.host-builds[0].run[1]: Too small: expected array to have >=1 items'],
    ['a host build with an empty argument', '{dir: web, run: [[make, ""]], output: o, set: {A: b}}', 'aidd.yml: offline-base.host-builds[0].run[0][1]: Too small: expected string to have >=1 characters'],
    ['a host build with a command as one string', '{dir: web, run: [make all], output: o, set: {A: b}}', 'aidd.yml: offline-base.host-builds[0].run[0]: expected array, received string'],
    ['an unknown key in a host build', '{dir: web, run: [[make]], output: o, set: {A: b}, env: {A: b}}', 'aidd.yml: offline-base.host-builds[0]: unknown key "env"; allowed: dir, run, output, set'],
    ['a host build without set', '{dir: web, run: [[make]], output: o}', 'aidd.yml: offline-base.host-builds[0].set: expected record, received undefined'],
  ])('refuses %s in one line naming the key', (_, hostBuild, message) => {
    expect(errorOf(`offline-base: {debian-packages: [make], images: {BASE_IMAGE: base}, host-builds: [${hostBuild}]}\n`)).toBe(message);
  });

  it('refuses a host build setting a variable compose cannot interpolate, naming the key', () => {
    expect(errorOf('offline-base: {debian-packages: [make], images: {BASE_IMAGE: base}, host-builds: [{dir: web, run: [[make]], output: o, set: {1A: b}}]}\n')).toBe('aidd.yml: offline-base.host-builds[0].set.1A: Invalid key in record');
  });

  it('refuses a file that is not YAML, naming it', () => {
    expect(errorOf('smoke: [\n')).toMatch(/^aidd\.yml is not valid YAML: /);
  });
});

describe('the published JSON Schema', () => {
  it('is schema/aidd.schema.json, generated from the schema the toolkit checks with', async () => {
    await expect(`${JSON.stringify(settingsJsonSchema(), null, 2)}\n`).toMatchFileSnapshot(path.join(REPO_ROOT, 'schema', 'aidd.schema.json'));
  });

  it('forbids unknown keys, so editors flag typos', () => {
    const schema = settingsJsonSchema() as { additionalProperties: boolean; properties: Record<string, unknown> };
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties)).toEqual(['image-name', 'offline-base', 'smoke', 'migrate', 'backup', 'proxy', 'env', 'target', 'swarm']);
  });
});
