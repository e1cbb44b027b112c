// A release as a Docker Swarm stack file, for `docker stack deploy`: the release's compose document (images
// pinned by digest, build: removed, as releaseCompose makes it) plus what a swarm needs to replace a
// service without downtime and to undo a bad update by itself. Pure: the deploy decides with it and the
// tests cover every rule.
import { stringify } from 'yaml';
import { UsageError } from '../../core/cli.ts';
import type { ComposeDocument } from '../../app/compose-file.ts';
import { interpolate, isPlainObject, type Variables } from '../../app/interpolate.ts';
import { parsePortEntry } from '../proxy.ts';
import type { SwarmSettings } from '../../app/settings.ts';
import type { MigrateSpec } from '../remote-scripts.ts';
import type { SwarmMigration } from './remote-scripts.ts';

/** Docker's duration syntax (1m30s, 500ms) in milliseconds; undefined for anything else. */
export function durationMs(value: unknown): number | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001, ns: 0.000001 };
  let total = 0;
  let rest = value;
  while (rest !== '') {
    const match = /^(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/.exec(rest);
    if (!match) return undefined;
    total += Number(match[1]) * units[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  return total;
}

/** A service that keeps data in a named volume: two of its tasks must never run at once. */
function keepsData(service: Record<string, unknown>): boolean {
  const volumes = Array.isArray(service.volumes) ? service.volumes : [];
  return volumes.some((volume) => {
    if (isPlainObject(volume)) return volume.type === 'volume' && typeof volume.source === 'string' && volume.source !== '';
    const [source = '', target] = String(volume).split(':');
    // NAME:PATH is a named volume; ./dir, /dir and ~/dir are bind mounts; a lone PATH is an anonymous volume.
    return target !== undefined && source !== '' && !/^[./~$]/.test(source);
  });
}

/**
 * How long swarm watches a replaced task before it counts the update as good: long enough for the
 * healthcheck to turn the task unhealthy (interval x retries), and at least Docker's 5 s.
 */
function monitorMs(service: Record<string, unknown>): number {
  const check = isPlainObject(service.healthcheck) ? service.healthcheck : undefined;
  if (!check || check.disable === true) return 5_000;
  const interval = durationMs(check.interval) ?? 30_000;
  const retries = typeof check.retries === 'number' ? check.retries : 3;
  return Math.max(5_000, interval * retries);
}

function seconds(ms: number): string {
  return `${Math.ceil(ms / 1000)}s`;
}

const RESTART_CONDITIONS: Record<string, string> = { no: 'none', always: 'any', 'unless-stopped': 'any', 'on-failure': 'on-failure' };

/** A ports: entry in the long syntax a stack takes; an address the swarm cannot keep is refused. */
function stackPort(entry: unknown, where: string, vars: Variables, publish: SwarmSettings['publish']): Record<string, unknown> {
  const text = (value: unknown) => (typeof value === 'string' ? interpolate(value, vars, where, { onMissing: 'empty' }) : value);
  const parsed = parsePortEntry(isPlainObject(entry) ? Object.fromEntries(Object.entries(entry).map(([key, value]) => [key, text(value)])) : text(entry));
  if (!parsed || !/^\d+$/.test(parsed.target) || (parsed.published !== '' && !/^\d+$/.test(parsed.published))) {
    throw new UsageError(`${where}: ${JSON.stringify(entry)} is not a port a stack can publish (one container port, optionally one published port)`);
  }
  if (!['', '0.0.0.0', '::'].includes(parsed.host)) {
    throw new UsageError(
      `${where}: a swarm publishes a port on every address of its nodes, so ${parsed.host} cannot be kept; publish it without an address (the firewall or the proxy decides who reaches it)`,
    );
  }
  return { target: Number(parsed.target), ...(parsed.published ? { published: Number(parsed.published) } : {}), protocol: parsed.protocol, mode: publish };
}

/** The stack document of a release; `vars` are the values of its .env (ports are written interpolated, nothing else is). */
export function stackDocument(raw: ComposeDocument, pinned: Record<string, string>, settings: SwarmSettings, vars: Variables, secretObjects: Record<string, string> = {}): ComposeDocument {
  const declared = isPlainObject(raw.secrets) ? raw.secrets : {};
  for (const secret of Object.keys(settings.secrets)) {
    if (!(secret in declared)) throw new UsageError(`aidd.yml swarm.secrets.${secret}: the compose file has no secret ${secret} (its top-level secrets: ${Object.keys(declared).join(', ') || 'none'})`);
  }
  const services = Object.fromEntries(
    Object.entries(raw.services).map(([name, definition]) => {
      const where = `services.${name}`;
      if (definition.container_name !== undefined) throw new UsageError(`${where}.container_name: a swarm names the tasks of a service itself; remove container_name`);
      if (definition.network_mode !== undefined) throw new UsageError(`${where}.network_mode: a stack's services run on its networks; remove network_mode`);
      const { build: _build, container_name: _name, depends_on: _dependsOn, restart, ports, deploy, ...rest } = definition;
      const given = isPlainObject(deploy) ? deploy : {};
      const stateful = keepsData(definition);
      const replicas = settings.replicas[name] ?? (typeof given.replicas === 'number' ? given.replicas : 1);
      if (stateful && replicas !== 1) throw new UsageError(`${where}: it keeps data in a named volume, so it runs one task at a time; drop its replicas setting`);
      // A service with data stops before its replacement starts: two databases on one volume corrupt it.
      const order = stateful ? 'stop-first' : 'start-first';
      const monitor = seconds(monitorMs(definition));
      const defaults = {
        endpoint_mode: settings.endpointMode,
        update_config: { parallelism: 1, order, failure_action: 'rollback', monitor },
        rollback_config: { parallelism: 1, order, monitor },
        restart_policy: { condition: RESTART_CONDITIONS[String(restart ?? 'always')] ?? 'any' },
        // A named volume lives on one node: the service stays there, on the manager, where the toolkit
        // connects and so where backups are taken (deploy.placement in the compose file says otherwise).
        ...(stateful ? { placement: { constraints: ['node.role == manager'] } } : {}),
      };
      const stackPorts = Array.isArray(ports) ? ports.map((entry, index) => stackPort(entry, `${where}.ports[${index}]`, vars, settings.publish)) : undefined;
      return [
        name,
        {
          ...rest,
          ...(pinned[name] ? { image: pinned[name] } : {}),
          ...(stackPorts ? { ports: stackPorts } : {}),
          // What the compose file says under deploy: wins over these defaults, key by key; aidd.yml's replicas over both.
          deploy: { ...defaults, ...given, replicas, update_config: { ...defaults.update_config, ...(isPlainObject(given.update_config) ? given.update_config : {}) } },
        },
      ];
    }),
  );
  // Migrations run as one-off containers on the stack's networks: each must be attachable.
  const networks = Object.fromEntries(
    Object.entries({ default: {}, ...(isPlainObject(raw.networks) ? raw.networks : {}) }).map(([name, network]) => {
      const given = isPlainObject(network) ? network : {};
      return [name, given.external ? given : { driver: 'overlay', attachable: true, ...given }];
    }),
  );
  // A secret aidd.yml maps to a .env variable is the Swarm secret the deploy made from its value.
  const secrets = { ...declared, ...Object.fromEntries(Object.entries(secretObjects).map(([secret, object]) => [secret, { external: true, name: object }])) };
  return { ...raw, version: '3.8', services, networks, ...(Object.keys(secrets).length ? { secrets } : {}) };
}

/** The stack file as written to the release directory (YAML 1.1, as compose-file.ts writes release files). */
export function stackFile(raw: ComposeDocument, pinned: Record<string, string>, settings: SwarmSettings, vars: Variables, secretObjects: Record<string, string> = {}): string {
  return stringify(stackDocument(raw, pinned, settings, vars, secretObjects), { version: '1.1', aliasDuplicateObjects: false, lineWidth: 0 });
}

/** A compose `environment:` (a map, or a list of NAME=VALUE) with its values interpolated; a bare NAME is left out. */
function environmentOf(environment: unknown, vars: Variables, where: string): Record<string, string> {
  const entries: [string, unknown][] = Array.isArray(environment)
    ? environment.flatMap((item) => {
        const text = String(item);
        return text.includes('=') ? [[text.slice(0, text.indexOf('=')), text.slice(text.indexOf('=') + 1)]] : [];
      })
    : isPlainObject(environment)
      ? Object.entries(environment).filter(([, value]) => value !== null && value !== undefined)
      : [];
  return Object.fromEntries(
    entries.map(([name, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`${where}.${name}: a migration on a swarm passes variables by name; rename it to letters, digits and _`);
      return [name, typeof value === 'string' ? interpolate(value, vars, `${where}.${name}`) : String(value)];
    }),
  );
}

/**
 * How a release's migration (aidd.yml migrate:) runs on a swarm: a one-off container of its service's
 * image with that service's environment, on the stack network it uses, after the services it depends on.
 */
export function swarmMigration(raw: ComposeDocument, migrate: MigrateSpec, pinned: Record<string, string>, settings: SwarmSettings, vars: Variables, secretObjects: Record<string, string>): SwarmMigration {
  const where = `services.${migrate.service}`;
  const definition = raw.services[migrate.service]!;
  if (Array.isArray(definition.secrets) && definition.secrets.length > 0) {
    throw new UsageError(`${where}.secrets: the migration runs on a swarm as a one-off container, which gets no Swarm secrets; give ${migrate.service} the values it migrates with through environment:`);
  }
  const networks = Array.isArray(definition.networks) ? definition.networks.map(String) : isPlainObject(definition.networks) ? Object.keys(definition.networks) : ['default'];
  const needs = { ...raw, services: Object.fromEntries(Object.entries(raw.services).filter(([name]) => migrate.needs.includes(name))) };
  return {
    image: pinned[migrate.service] ?? interpolate(String(definition.image), vars, `${where}.image`),
    command: migrate.command,
    environment: environmentOf(definition.environment, vars, `${where}.environment`),
    ...(migrate.needs.length ? { network: networks[0]! } : {}),
    needs: migrate.needs,
    needsStack: stackFile(needs, pinned, settings, vars, secretObjects),
  };
}
