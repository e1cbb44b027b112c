// The toolkit's settings for an app: aidd.yml next to its compose file. Image naming, smoke checks,
// migration, backup, offline base images and the app's env variables; everything else comes from the
// compose files. The file is checked strictly against one zod schema, which also renders the published
// JSON Schema (schema/aidd.schema.json) that editors use to complete and check aidd.yml.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../core/cli.ts';
import type { BackupSpec, MigrateSpec } from '../deploy/remote-scripts.ts';
import type { HttpCheckSpec } from './smoke.ts';

export const SETTINGS_FILE = 'aidd.yml';

const variableName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/);
const serviceName = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/).describe('A service of the compose file.');
const target = z.enum(['local', 'production']);

/** Formats a variable's value may be required to have; the names map to lib/env/env-schema.ts `formats`. */
export const FORMAT_NAMES = [
  'text', 'url', 'port', 'positive-integer', 'lowercase-owner', 'password', 'image-digest', 'ip-address', 'host',
  'registry-host', 'image-reference', 'image-tag', 'identifier', 'unix-user', 'user-name', 'absolute-path', 'token',
] as const;

const variable = z.strictObject({
  name: variableName.describe('The variable name, as compose interpolates it.'),
  description: z.string().min(1).describe('What it is, in one line.'),
  group: z.string().min(1).optional().describe('Heading it is listed under in the templates (default: Settings).'),
  source: z.string().min(1).optional().describe('Where to get a value, when that is not obvious.'),
  secret: z.boolean().optional().describe('Masked in every output, never accepted on the command line (default false).'),
  targets: z.array(target).min(1).optional().describe('The .env files that use it (default: local and production).'),
  required: z.union([z.boolean(), z.array(target)]).optional().describe('true for every target, or the targets that need a value (default false).'),
  'required-when': z.strictObject({ name: z.string(), equals: z.string() }).optional().describe('Also required when another variable has this value.'),
  format: z
    .union([
      z.enum(FORMAT_NAMES),
      z.strictObject({ pattern: z.string().min(1), describe: z.string().min(1) }),
      z.strictObject({ 'one-of': z.array(z.string()).min(1) }),
    ])
    .optional()
    .describe('A named format, a regular expression with its description, or a list of choices (default: text).'),
  default: z.string().optional().describe('The value the app uses when the variable is unset.'),
  template: z.partialRecord(target, z.string()).optional().describe("Written into a target's template instead of the default."),
  'override-example': z.string().optional().describe('An optional override: commented out in templates, showing this example.'),
  generate: z.boolean().optional().describe('setup-env can generate a strong random value for it.'),
  aliases: z.array(z.string()).optional().describe('Other environment variables that supply the value when it is unset.'),
});

const smokeCheck = z.strictObject({
  name: z.string().min(1),
  service: serviceName,
  port: z.number().int().min(1).max(65535).describe('The container port; the published or forwarded port is looked up.'),
  path: z.string().startsWith('/'),
  expect: z
    .strictObject({
      status: z.number().int().min(100).max(599).optional(),
      json: z.record(z.string(), z.unknown()).optional().describe('Fields the JSON body must hold with exactly these values.'),
      'json-keys': z.array(z.string()).optional().describe('Fields the JSON body must have, any value.'),
      contains: z.string().optional().describe('Text the body must contain.'),
      report: z.string().optional().describe('A JSON field shown in the report.'),
    })
    .optional(),
});

export const settingsSchema = z
  .strictObject({
    'image-name': z
      .string()
      .regex(/^[a-z0-9{}][a-z0-9._/{}-]*$/)
      .optional()
      .describe('Registry image name of a built service without a registry in its image:, {service} replaced (default {service}).'),
    'offline-base': z
      .strictObject({
        'debian-packages': z.array(z.string().regex(/^[a-z0-9][a-z0-9.+-]*$/)).min(1),
        images: z
          .record(variableName, z.string().min(1))
          .describe(
            'A compose variable or a Dockerfile build ARG -> "base", "host-node" (the base with the Node.js the toolkit runs on), or a Dockerfile (relative to the compose directory) built FROM the base.',
          ),
        'host-builds': z
          .array(
            z.strictObject({
              dir: z.string().min(1).describe('The folder the commands run in, relative to the compose directory: a build context.'),
              run: z.array(z.array(z.string().min(1)).min(1)).min(1).describe('Commands run one after another, each an argv list.'),
              output: z.string().min(1).describe('What the commands produce, relative to dir; the run is skipped while it exists and the sources are unchanged.'),
              set: z.record(variableName, z.string()).describe('Variables handed to compose and to the builds like the stand-ins, telling the Dockerfile to copy the output.'),
            }),
          )
          .optional()
          .describe('Builds run on the host when the stand-ins are used, for Dockerfiles that install from a package registry containers here cannot reach.'),
      })
      .optional()
      .describe('Stand-ins for official base images on machines that cannot pull them, built from Debian packages.'),
    smoke: z.array(smokeCheck).optional().describe('HTTP checks of the smoke test, on top of every service healthcheck.'),
    migrate: z
      .strictObject({ service: serviceName, command: z.array(z.string()).min(1) })
      .optional()
      .describe('Run as a one-off container of the new release before it goes live; its depends_on start first.'),
    backup: z
      .strictObject({
        service: serviceName,
        command: z.string().min(1).describe('Run inside the service container with sh -c; writes the dump to stdout.'),
        extension: z.string().regex(/^[a-z0-9]+$/).optional(),
        restore: z.string().min(1).optional().describe('Run inside the service container with sh -c; reads a dump on stdin and replaces the database (ssh-deploy --restore-backup).'),
      })
      .optional()
      .describe('Taken from the running release before migrating.'),
    proxy: z
      .strictObject({
        enabled: z.boolean().optional().describe('false: publish ports as the compose file says and replace containers in place (default true).'),
        http: z
          .array(
            z.strictObject({
              service: serviceName,
              port: z.number().int().min(1).max(65535).describe('The container port.'),
              health: z.string().startsWith('/').optional().describe('Path the proxy checks before sending requests to a container; a 2xx answer is healthy (default: a smoke-checked path of this port, "health" ones first, else /).'),
            }),
          )
          .optional()
          .describe('HTTP ports routed through the proxy besides those the smoke checks name.'),
        sites: z
          .array(
            z.strictObject({
              domain: z.string().regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/).describe('The host name served over HTTPS.'),
              service: serviceName,
              port: z.number().int().min(1).max(65535).describe('The container port.'),
              tls: z.enum(['auto', 'internal']).optional().describe("auto: a certificate from Let's Encrypt or ZeroSSL (the domain must point at the server, ports 80 and 443 open); internal: the proxy's own CA (default auto)."),
              listen: z
                .string()
                .regex(/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])?:\d{1,5}$/)
                .optional()
                .describe('ADDRESS:PORT to serve it on (default :443, every address).'),
            }),
          )
          .optional()
          .describe('Domains the proxy serves over HTTPS.'),
      })
      .optional()
      .describe('The reverse proxy (Caddy) in front of HTTP services: zero-downtime switches and HTTPS.'),
    env: z
      .array(variable)
      .optional()
      .describe("The app's variables; without this list they are read from the compose files' ${VAR} references."),
    target: z
      .enum(['compose', 'swarm'])
      .optional()
      .describe('Where ssh-deploy runs the app: compose on one server (default), or a Docker Swarm whose manager is the --host (docker stack deploy).'),
    swarm: z
      .strictObject({
        replicas: z.record(serviceName, z.number().int().min(1).max(100)).optional().describe('Tasks per service (default: its deploy.replicas, else 1).'),
        publish: z
          .enum(['ingress', 'host'])
          .optional()
          .describe("ingress: a published port answers on every node (Docker's routing mesh, default); host: only on the nodes running a task, for kernels without IP_VS or a load balancer of your own."),
        'endpoint-mode': z
          .enum(['vip', 'dnsrr'])
          .optional()
          .describe("vip: services reach each other through one virtual IP (default); dnsrr: through the tasks' own addresses in DNS (without IP_VS)."),
        secrets: z
          .record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/), z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/))
          .optional()
          .describe("A secret of the compose file's top-level secrets: -> the .env variable whose value it gets on the swarm, as a Swarm secret (a file under /run/secrets/ in the services that list it)."),
      })
      .optional()
      .describe('How a swarm runs the app (target: swarm).'),
  })
  .describe('aidd-devops settings of a compose app (aidd.yml next to its compose file).');

export type RawSettings = z.infer<typeof settingsSchema>;
export type RawVariable = z.infer<typeof variable>;

/** Commands run on the host in `dir` when the offline stand-ins are used; `set` tells the build to copy `output`. */
export interface HostBuildSpec {
  dir: string;
  run: string[][];
  output: string;
  set: Record<string, string>;
}

export interface AiddConfig {
  /** Registry image name per service, `{service}` replaced. */
  imageName: string;
  offlineBase?: {
    debianPackages: string[];
    /** Variable -> 'base', 'host-node' or a Dockerfile (relative to the compose dir) built FROM the base. */
    images: Record<string, string>;
    hostBuilds: HostBuildSpec[];
  };
  smoke: HttpCheckSpec[];
  /** One-off migration run before a release goes live. */
  migrate?: MigrateSpec;
  /** Database dump taken before migrating. */
  backup?: BackupSpec;
  /** The app's declared variables; undefined when they come from the compose files. */
  env?: RawVariable[];
  proxy: ProxySettings;
  /** compose: one server; swarm: a Docker Swarm behind its manager. */
  target: 'compose' | 'swarm';
  swarm: SwarmSettings;
}

export interface SwarmSettings {
  /** Tasks per service, where aidd.yml sets them (else the compose file's deploy.replicas, else 1). */
  replicas: Record<string, number>;
  /**
   * How a published port reaches the tasks: the routing mesh on every node (ingress, Docker's default), or
   * only the node a task runs on (host: for kernels without IP_VS, where the routing mesh does not work).
   */
  publish: 'ingress' | 'host';
  /** How services reach each other: one virtual IP (vip) or the tasks' addresses in DNS (dnsrr: without IP_VS). */
  endpointMode: 'vip' | 'dnsrr';
  /** A secret of the compose file -> the .env variable holding its value: made a Swarm secret. */
  secrets: Record<string, string>;
}

export interface ProxySite {
  domain: string;
  service: string;
  port: number;
  tls: 'auto' | 'internal';
  /** ADDRESS:PORT; undefined: :443 on every address. */
  listen?: string;
}

export interface ProxySettings {
  enabled: boolean;
  /** Container ports served over HTTP, per service: smoke-checked ones, proxy.http and the sites', each with the path the proxy health-checks. */
  http: { service: string; port: number; health: string }[];
  sites: ProxySite[];
}

/** The JSON Schema published for editors (schema/aidd.schema.json). */
export function settingsJsonSchema(): Record<string, unknown> {
  return { ...z.toJSONSchema(settingsSchema, { io: 'input' }), title: 'aidd.yml' };
}

/** What the union-typed keys accept, for their one-line errors. */
const UNION_CHOICES: Record<string, string> = {
  format: `one of ${FORMAT_NAMES.join(', ')}, or {pattern, describe}, or {one-of: [...]}`,
  required: 'true, false or a list of targets (local, production)',
};

/** One zod issue as one line: the key path, then what is wrong and what is allowed. */
function describeIssue(issue: z.core.$ZodIssue): string {
  const at = issue.path.length ? issue.path.map((key, index) => (typeof key === 'number' ? `[${key}]` : `${index ? '.' : ''}${String(key)}`)).join('') : 'the top level';
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(issue.path);
    return `${at}: unknown key ${issue.keys.map((key) => `"${key}"`).join(', ')}${allowed ? `; allowed: ${allowed.join(', ')}` : ''}`;
  }
  if (issue.code === 'invalid_value') return `${at}: must be one of ${issue.values.map(String).join(', ')}`;
  if (issue.code === 'invalid_union') return `${at}: must be ${UNION_CHOICES[String(issue.path.at(-1))] ?? 'another form'}; see schema/aidd.schema.json`;
  return `${at}: ${issue.message.replace(/^Invalid input: /, '')}`;
}

/** The keys the object at `at` accepts, found by walking the schema. */
function allowedKeys(at: PropertyKey[]): string[] | undefined {
  let schema: z.ZodType = settingsSchema;
  for (const key of at) {
    const unwrapped: z.ZodType = schema instanceof z.ZodOptional ? (schema.unwrap() as z.ZodType) : schema;
    if (typeof key === 'number' && unwrapped instanceof z.ZodArray) schema = unwrapped.element as z.ZodType;
    else if (unwrapped instanceof z.ZodObject) schema = unwrapped.shape[String(key)] as z.ZodType;
    else return undefined;
  }
  const object = schema instanceof z.ZodOptional ? schema.unwrap() : schema;
  return object instanceof z.ZodObject ? Object.keys(object.shape) : undefined;
}

/**
 * Reads aidd.yml in `dir` (absent: defaults). Any problem, including a service that the compose
 * files do not have, is one UsageError naming the file and the key.
 */
export function loadSettings(dir: string, serviceNames: string[], dependsOf: (service: string) => string[]): AiddConfig {
  const file = path.join(dir, SETTINGS_FILE);
  let raw: unknown = {};
  if (existsSync(file)) {
    try {
      raw = parseYaml(readFileSync(file, 'utf8')) ?? {};
    } catch (error) {
      throw new UsageError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) throw new UsageError(`${file}: ${describeIssue(parsed.error.issues[0]!)}`);
  const settings = parsed.data;

  const services = [
    ...(settings.smoke ?? []).map((check, index) => [`smoke[${index}].service`, check.service] as const),
    ...(settings.migrate ? [['migrate.service', settings.migrate.service] as const] : []),
    ...(settings.backup ? [['backup.service', settings.backup.service] as const] : []),
    ...(settings.proxy?.http ?? []).map((route, index) => [`proxy.http[${index}].service`, route.service] as const),
    ...(settings.proxy?.sites ?? []).map((site, index) => [`proxy.sites[${index}].service`, site.service] as const),
    ...Object.keys(settings.swarm?.replicas ?? {}).map((service) => [`swarm.replicas.${service}`, service] as const),
  ];
  for (const [key, service] of services) {
    if (!serviceNames.includes(service)) throw new UsageError(`${file}: ${key}: "${service}" is not a service of the compose file; services: ${serviceNames.join(', ')}`);
  }
  const names = new Set<string>();
  for (const [index, spec] of (settings.env ?? []).entries()) {
    if (names.has(spec.name)) throw new UsageError(`${file}: env[${index}].name: ${spec.name} is listed twice`);
    names.add(spec.name);
  }
  for (const [index, spec] of (settings.env ?? []).entries()) {
    if (spec['required-when'] && !names.has(spec['required-when'].name)) {
      throw new UsageError(`${file}: env[${index}].required-when.name: ${spec['required-when'].name} is not in env`);
    }
    if (typeof spec.format === 'object' && 'pattern' in spec.format) {
      try {
        new RegExp(spec.format.pattern);
      } catch {
        throw new UsageError(`${file}: env[${index}].format.pattern: not a valid regular expression`);
      }
    }
  }

  const { migrate, backup } = settings;
  return {
    imageName: settings['image-name'] ?? '{service}',
    offlineBase: settings['offline-base'] && {
      debianPackages: settings['offline-base']['debian-packages'],
      images: settings['offline-base'].images,
      hostBuilds: settings['offline-base']['host-builds'] ?? [],
    },
    smoke: settings.smoke ?? [],
    migrate: migrate && { service: migrate.service, command: migrate.command, needs: dependsOf(migrate.service) },
    backup: backup && { service: backup.service, command: backup.command, extension: backup.extension ?? 'dump', ...(backup.restore ? { restore: backup.restore } : {}) },
    env: settings.env,
    proxy: proxySettings(settings),
    target: settings.target ?? 'compose',
    swarm: {
      replicas: settings.swarm?.replicas ?? {},
      publish: settings.swarm?.publish ?? 'ingress',
      endpointMode: settings.swarm?.['endpoint-mode'] ?? 'vip',
      secrets: settings.swarm?.secrets ?? {},
    },
  };
}

function proxySettings(settings: RawSettings): ProxySettings {
  const sites = (settings.proxy?.sites ?? []).map((site) => ({ domain: site.domain, service: site.service, port: site.port, tls: site.tls ?? 'auto', ...(site.listen ? { listen: site.listen } : {}) }));
  // The proxy checks a path the app answers when ready: the one given, else a smoke-checked path with
  // "health" in it, else the first smoke-checked one, else /.
  const smoke = [...(settings.smoke ?? [])].sort((a, b) => Number(b.path.includes('health')) - Number(a.path.includes('health')));
  const healthOf = (service: string, port: number) =>
    settings.proxy?.http?.find((route) => route.service === service && route.port === port)?.health ?? smoke.find((check) => check.service === service && check.port === port)?.path ?? '/';
  const http = [...(settings.smoke ?? []), ...(settings.proxy?.http ?? []), ...sites].map(({ service, port }) => ({ service, port, health: healthOf(service, port) }));
  const unique = http.filter((route, index) => http.findIndex((other) => other.service === route.service && other.port === route.port) === index);
  return { enabled: settings.proxy?.enabled ?? true, http: unique, sites };
}
