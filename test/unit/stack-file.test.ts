import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ComposeDocument } from '../../lib/app/compose-file.ts';
import { UsageError } from '../../lib/core/cli.ts';
import { durationMs, stackDocument, stackFile, swarmMigration } from '../../lib/deploy/swarm/stack-file.ts';
import type { SwarmSettings } from '../../lib/app/settings.ts';
import { thrown } from './thrown.ts';

const settings: SwarmSettings = { replicas: { api: 2 }, publish: 'ingress', endpointMode: 'vip', secrets: {} };

/** The reference app's shape: a built api with a healthcheck and a published port, and a database with a volume. */
const app: ComposeDocument = {
  services: {
    api: {
      build: { context: 'api' },
      image: 'ghcr.io/me/aidd-api:latest',
      restart: 'unless-stopped',
      depends_on: { postgres: { condition: 'service_healthy' } },
      ports: ['${BIND_ADDRESS:-127.0.0.1}:${API_PORT:-8000}:8000'],
      environment: { DATABASE_URL: 'postgresql://aidd:${POSTGRES_PASSWORD}@postgres/aidd' },
      healthcheck: { test: ['CMD', 'wget', '-q', 'http://127.0.0.1:8000/health'], interval: '3s', retries: 4 },
    },
    postgres: { image: 'postgres:16-alpine', volumes: ['pgdata:/var/lib/postgresql/data'], restart: 'always' },
  },
  volumes: { pgdata: {} },
};
const pinned = { api: 'ghcr.io/me/aidd-api@sha256:aa' };
const vars = { BIND_ADDRESS: '0.0.0.0', API_PORT: '8000' };

describe('stackDocument', () => {
  it('pins the images, drops build: and depends_on, and adds updates that start first and roll back by themselves', () => {
    const stack = stackDocument(app, pinned, settings, vars);
    expect(stack.version).toBe('3.8');
    const api = stack.services.api!;
    expect(api.image).toBe('ghcr.io/me/aidd-api@sha256:aa');
    expect(api.build).toBeUndefined();
    expect(api.depends_on).toBeUndefined();
    expect(api.restart).toBeUndefined();
    expect(api.deploy).toEqual({
      replicas: 2,
      endpoint_mode: 'vip',
      // The healthcheck turns a bad task unhealthy after 3 s x 4: swarm watches each task that long.
      update_config: { parallelism: 1, order: 'start-first', failure_action: 'rollback', monitor: '12s' },
      rollback_config: { parallelism: 1, order: 'start-first', monitor: '12s' },
      restart_policy: { condition: 'any' },
    });
    expect(api.ports).toEqual([{ target: 8000, published: 8000, protocol: 'tcp', mode: 'ingress' }]);
    // Only the ports are interpolated: the secret stays a reference for docker stack deploy to fill in.
    expect(api.environment).toEqual({ DATABASE_URL: 'postgresql://aidd:${POSTGRES_PASSWORD}@postgres/aidd' });
    expect(stack.networks).toEqual({ default: { driver: 'overlay', attachable: true } });
  });

  it('runs a service with a named volume as one task that stops before its replacement starts', () => {
    const postgres = stackDocument(app, pinned, settings, vars).services.postgres!;
    expect(postgres.deploy).toMatchObject({ replicas: 1, update_config: { order: 'stop-first', monitor: '5s' }, rollback_config: { order: 'stop-first' } });
    expect(postgres.image).toBe('postgres:16-alpine');
    // Its volume lives on one node: the manager, where backups are taken.
    expect(postgres.deploy).toMatchObject({ placement: { constraints: ['node.role == manager'] } });
    expect(stackDocument(app, pinned, settings, vars).services.api!.deploy).not.toHaveProperty('placement');
    const error = thrown(() => stackDocument(app, pinned, { ...settings, replicas: { postgres: 2 } }, vars));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toBe('services.postgres: it keeps data in a named volume, so it runs one task at a time; drop its replicas setting');
  });

  it('publishes on the nodes of the tasks and names tasks in DNS where the settings ask for it (no IP_VS)', () => {
    const api = stackDocument(app, pinned, { ...settings, publish: 'host', endpointMode: 'dnsrr' }, vars).services.api!;
    expect(api.ports).toEqual([{ target: 8000, published: 8000, protocol: 'tcp', mode: 'host' }]);
    expect(api.deploy).toMatchObject({ endpoint_mode: 'dnsrr' });
  });

  it('lets the compose file\'s own deploy: keys win over the defaults', () => {
    const own: ComposeDocument = { services: { web: { image: 'web', deploy: { replicas: 3, update_config: { parallelism: 2 } } } } };
    expect(stackDocument(own, {}, { ...settings, replicas: {} }, {}).services.web!.deploy).toMatchObject({ replicas: 3, update_config: { parallelism: 2, order: 'start-first', failure_action: 'rollback' } });
  });

  it('refuses in one line what a swarm cannot keep: one address for a port, container_name, network_mode', () => {
    expect(thrown(() => stackDocument(app, pinned, settings, { API_PORT: '8000' })).message).toBe(
      'services.api.ports[0]: a swarm publishes a port on every address of its nodes, so 127.0.0.1 cannot be kept; publish it without an address (the firewall or the proxy decides who reaches it)',
    );
    const named: ComposeDocument = { services: { web: { image: 'web', container_name: 'web' } } };
    expect(thrown(() => stackDocument(named, {}, settings, {})).message).toBe('services.web.container_name: a swarm names the tasks of a service itself; remove container_name');
    const host: ComposeDocument = { services: { web: { image: 'web', network_mode: 'host' } } };
    expect(thrown(() => stackDocument(host, {}, settings, {})).message).toBe("services.web.network_mode: a stack's services run on its networks; remove network_mode");
    const range: ComposeDocument = { services: { web: { image: 'web', ports: ['8000-8010:8000-8010'] } } };
    expect(thrown(() => stackDocument(range, {}, settings, {})).message).toMatch(/^services\.web\.ports\[0\]: "8000-8010:8000-8010" is not a port a stack can publish/);
  });

  it('maps restart: to a restart policy', () => {
    const restarts = (restart: string) => stackDocument({ services: { web: { image: 'web', restart } } }, {}, settings, {}).services.web!.deploy as { restart_policy: unknown };
    expect(restarts('no').restart_policy).toEqual({ condition: 'none' });
    expect(restarts('on-failure').restart_policy).toEqual({ condition: 'on-failure' });
    expect(restarts('unless-stopped').restart_policy).toEqual({ condition: 'any' });
  });
});

describe('stackDocument: Swarm secrets and migrations', () => {
  const withSecret: ComposeDocument = {
    ...app,
    services: { ...app.services, api: { ...app.services.api!, secrets: ['db_password'] } },
    secrets: { db_password: { file: './secrets/db_password.txt' }, other: { file: './other.txt' } },
  };

  it('makes a secret aidd.yml maps to a variable the external Swarm secret the deploy created, and keeps the others as written', () => {
    const stack = stackDocument(withSecret, pinned, { ...settings, secrets: { db_password: 'POSTGRES_PASSWORD' } }, vars, { db_password: 'db_password_0123456789ab' });
    expect(stack.secrets).toEqual({ db_password: { external: true, name: 'db_password_0123456789ab' }, other: { file: './other.txt' } });
    expect(stack.services.api!.secrets).toEqual(['db_password']);
  });

  it('refuses a mapped secret the compose file does not declare, in one line', () => {
    const error = thrown(() => stackDocument(app, pinned, { ...settings, secrets: { db_password: 'POSTGRES_PASSWORD' } }, vars));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toBe('aidd.yml swarm.secrets.db_password: the compose file has no secret db_password (its top-level secrets: none)');
  });

  it('runs a migration with its service\'s image and environment on its network, after a stack of the services it needs', () => {
    const migration = swarmMigration(app, { service: 'api', command: ['migrate'], needs: ['postgres'] }, pinned, settings, { ...vars, POSTGRES_PASSWORD: 'pw' }, {});
    expect(migration).toMatchObject({ image: pinned.api, command: ['migrate'], environment: { DATABASE_URL: 'postgresql://aidd:pw@postgres/aidd' }, network: 'default', needs: ['postgres'] });
    expect(Object.keys((parse(migration.needsStack) as ComposeDocument).services)).toEqual(['postgres']);
  });

  it('refuses a migration whose service reads Swarm secrets: a one-off container gets none', () => {
    const error = thrown(() => swarmMigration(withSecret, { service: 'api', command: ['migrate'], needs: [] }, pinned, settings, vars, {}));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toMatch(/^services\.api\.secrets: the migration runs on a swarm as a one-off container, which gets no Swarm secrets/);
  });
});

describe('stackFile', () => {
  it('writes YAML that reads back as the document, strings kept as strings', () => {
    const text = stackFile(app, pinned, settings, vars);
    expect(parse(text, { version: '1.1' })).toEqual(JSON.parse(JSON.stringify(stackDocument(app, pinned, settings, vars))));
    expect(text).toMatch(/^version: "3\.8"$/m);
  });
});

describe('durationMs', () => {
  it("reads Docker's durations", () => {
    expect(durationMs('3s')).toBe(3_000);
    expect(durationMs('1m30s')).toBe(90_000);
    expect(durationMs('500ms')).toBe(500);
    expect(durationMs('1h')).toBe(3_600_000);
    expect(durationMs('3')).toBeUndefined();
    expect(durationMs(5)).toBeUndefined();
  });
});
