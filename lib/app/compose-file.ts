// Reading compose files the way compose reads them: YAML merge keys (`<<: *anchor`), `extends` (same file
// or `file:`), several files merged in order, and the override file compose adds on its own. Each file is
// parsed once and read twice: as written (the release file, which the server interpolates with its own
// .env) and interpolated (names, builds, ports on this machine).
//
// Merge rules (the Compose spec's "merge" chapter and compose-go's override package, for the keys apps
// use; docker-compose 1.29 agrees on each of these):
//   - mappings merge key by key, the later file winning; scalars are replaced; `null` keeps what was there;
//   - `command`, `entrypoint` and `healthcheck.test` are replaced whole;
//   - `environment`, `labels`, `annotations`, `sysctls`, `build.args`, `build.labels`, `deploy.labels` merge
//     by variable name, whether written as a mapping or as KEY=VALUE lists;
//   - `ports` (by ip, published, target, protocol), `volumes` (by target), `secrets` and `configs` (by
//     target), `devices` (by container path) and `env_file` (by path): an entry with the same key replaces
//     the earlier one in place, others are appended;
//   - `depends_on` and `networks` merge by service or network name; lists of names stay lists;
//   - `expose`, `dns`, `dns_search`, `dns_opt`, `cap_add`, `cap_drop`, `profiles`, `tmpfs`, `links`,
//     `external_links`, `extra_hosts`, `security_opt`, `volumes_from`, `group_add`: appended without repeats;
//   - `logging` merges when both files name the same driver (or one names none), else is replaced;
//   - any other sequence is appended;
//   - Compose v2's `!reset` removes a value and `!override` replaces it without merging.
// Where 1.29 differs, the spec wins: 1.29 replaces a top-level volume or network definition whole, the
// spec merges it.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { isPair, isScalar, isSeq, LineCounter, Pair, parseDocument, Scalar, stringify, visit, YAMLMap } from 'yaml';
import { UsageError } from '../core/cli.ts';
import { childPath, interpolateDocument, isPlainObject, variableReferences, type InterpolateOptions, type Variables, type VariableReference } from './interpolate.ts';

export type ComposeDocument = { services: Record<string, Record<string, unknown>> } & Record<string, unknown>;

export interface ComposeFiles {
  /** Every file read, absolute, in order: the given ones, then the implied override file. */
  files: string[];
  /** The merged document as written, before interpolation. */
  raw: ComposeDocument;
  /** The merged document with its variables substituted. */
  interpolated: ComposeDocument;
  /** Every variable reference of the merged document. */
  variables: VariableReference[];
}

export interface ReadOptions extends InterpolateOptions {
  /** Values for interpolation; see projectVariables. */
  vars: Variables;
}

/** What compose interpolates with: the shell's environment over the project directory's .env. */
export function projectVariables(dir: string, env: NodeJS.ProcessEnv = process.env): Variables {
  const envFile = path.join(dir, '.env');
  return { ...(existsSync(envFile) ? parseDotenv(readFileSync(envFile)) : {}), ...env };
}

// The names compose looks for; v2's order of preference.
const DEFAULT_FILE_NAMES = ['compose.yaml', 'compose.yml', 'docker-compose.yml', 'docker-compose.yaml'];
const OVERRIDE_FILE_NAMES = ['compose.override.yml', 'compose.override.yaml', 'docker-compose.override.yml', 'docker-compose.override.yaml'];

/**
 * Adds the override file compose reads on its own (`docker compose up` with no -f) when one file with a
 * default name is given. Two override files are refused: compose v1 refuses them, v2 silently takes one.
 */
export function withOverrideFile(files: string[]): string[] {
  if (files.length !== 1 || !DEFAULT_FILE_NAMES.includes(path.basename(files[0]!))) return files;
  const dir = path.dirname(files[0]!);
  const overrides = OVERRIDE_FILE_NAMES.map((name) => path.join(dir, name)).filter((file) => existsSync(file));
  if (overrides.length > 1) throw new UsageError(`${overrides.join(' and ')} are both override files of ${files[0]}; keep one (compose v1 refuses both, v2 reads only the first)`);
  return [...files, ...overrides];
}

/** Reads, resolves and merges compose files; any file compose would reject is one UsageError naming it and the key. */
export function readComposeFiles(given: string[], options: ReadOptions): ComposeFiles {
  const files = withOverrideFile(given.map((file) => path.resolve(file)));
  const parsed = new Map<string, Record<string, unknown>>();
  const interpolated = new Map<string, Record<string, unknown>>();
  const loadRaw = (file: string) => cached(parsed, file, () => parseComposeFile(file));
  const loadInterpolated = (file: string) => cached(interpolated, file, () => interpolateDocument(loadRaw(file), options.vars, file, options));
  const merged = (load: Loader) => stripMarkers(files.map((file) => resolveExtends(file, load)).reduce(mergeDocuments)) as ComposeDocument;
  const raw = merged(loadRaw);
  if (!isPlainObject(raw.services)) throw new UsageError(`compose file ${files[0]} has no services: section`);
  return { files, raw, interpolated: merged(loadInterpolated), variables: variableReferences(raw, files.join(', ')) };
}

function cached<T>(cache: Map<string, T>, key: string, make: () => T): T {
  if (!cache.has(key)) cache.set(key, make());
  return cache.get(key)!;
}

// ---------------------------------------------------------------- one file

// Compose v2's `!reset` and `!override` tags, kept as plain values until the merge has used them.
const RESET = '\u0000!reset';
const OVERRIDE = '\u0000!override';

function parseComposeFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`compose file ${file} cannot be read; pass --compose PATH to your docker-compose.yml`);
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { merge: true, lineCounter });
  const error = document.errors[0];
  if (error) throw new UsageError(`compose file ${file} is not valid YAML: ${error.message.split('\n')[0]}`);
  visit(document, {
    Alias(_, node, ancestors) {
      if (!node.resolve(document)) {
        throw new UsageError(`compose file ${file}: ${nodePath(ancestors, node)}: unknown anchor *${node.source} (line ${lineCounter.linePos(node.range?.[0] ?? 0).line})`);
      }
    },
    Node(_, node) {
      if (node.tag === '!reset') return new Scalar(RESET);
      if (node.tag === '!override') {
        node.tag = undefined;
        const wrapper = new YAMLMap();
        wrapper.items.push(new Pair(new Scalar(OVERRIDE), node));
        return wrapper;
      }
      return undefined;
    },
  });
  let value: unknown;
  try {
    value = document.toJS();
  } catch (problem) {
    throw new UsageError(`compose file ${file} is not valid YAML: ${(problem as Error).message.split('\n')[0]}`);
  }
  if (!isPlainObject(value)) throw new UsageError(`compose file ${file}: the top level must be a mapping with a services: key`);
  if (value.services === undefined || value.services === null) return value;
  if (!isPlainObject(value.services)) throw new UsageError(`compose file ${file}: services must be a mapping of service names`);
  for (const [name, service] of Object.entries(value.services)) {
    if (!isPlainObject(service)) throw new UsageError(`compose file ${file}: services.${name} must be a mapping`);
  }
  return value;
}

/** The key path of a node from its ancestors in the YAML tree. */
function nodePath(ancestors: readonly unknown[], node: unknown): string {
  const chain = [...ancestors, node];
  let at = '';
  chain.forEach((item, index) => {
    if (isPair(item)) {
      const key: unknown = isScalar(item.key) ? item.key.value : item.key;
      // A merge key's value is a symbol described `<<`.
      at = childPath(at, typeof key === 'symbol' ? String(key.description) : String(key));
    }
    else if (isSeq(item)) {
      const position = item.items.indexOf(chain[index + 1] as never);
      if (position >= 0) at = childPath(at, position);
    }
  });
  return at || 'the top level';
}

// ---------------------------------------------------------------- extends

type Loader = (file: string) => Record<string, unknown>;

function servicesOf(document: Record<string, unknown>): Record<string, Record<string, unknown>> {
  return (document.services ?? {}) as Record<string, Record<string, unknown>>;
}

function resolveExtends(file: string, load: Loader): Record<string, unknown> {
  const document = load(file);
  const services = servicesOf(document);
  if (!Object.values(services).some((service) => service.extends !== undefined)) return document;
  return { ...document, services: Object.fromEntries(Object.keys(services).map((name) => [name, extendedService(file, name, load, [])])) };
}

/** A service with its `extends` chain merged in, its paths relative to `file`'s directory. */
function extendedService(file: string, name: string, load: Loader, chain: string[]): Record<string, unknown> {
  const { extends: reference, ...own } = servicesOf(load(file))[name]!;
  if (reference === undefined) return own;
  const at = `compose file ${file}: services.${name}.extends`;
  const link = `${name} (${file})`;
  if (chain.includes(link)) throw new UsageError(`${at}: circular extends ${[...chain, link].join(' -> ')}`);
  const target = typeof reference === 'string' ? { service: reference } : isPlainObject(reference) ? reference : {};
  if (typeof target.service !== 'string') throw new UsageError(`${at}: must name a service: extends: NAME, or extends: {service: NAME, file: PATH}`);
  if (target.file !== undefined && typeof target.file !== 'string') throw new UsageError(`${at}.file must be a path`);
  const baseFile = target.file ? path.resolve(path.dirname(file), target.file) : file;
  if (!existsSync(baseFile)) throw new UsageError(`${at}: file ${target.file} does not exist`);
  if (!(target.service in servicesOf(load(baseFile)))) throw new UsageError(`${at}: service ${target.service} is not in ${baseFile}`);
  const base = extendedService(baseFile, target.service, load, [...chain, link]);
  return mergeService(baseFile === file ? base : rebasePaths(base, path.dirname(baseFile), path.dirname(file)), own);
}

/** A service from another directory: its relative build context, bind mounts and env files, seen from `to`. */
function rebasePaths(service: Record<string, unknown>, from: string, to: string): Record<string, unknown> {
  // A variable, an absolute or home path, or a remote build context means the same from anywhere.
  const rebase = (value: string) => {
    if (value.includes('$') || path.isAbsolute(value) || value.startsWith('~') || /^[a-z]+:\/\/|^git@/i.test(value)) return value;
    const relative = path.relative(to, path.resolve(from, value));
    return relative.startsWith('.') ? relative : `./${relative}`;
  };
  const out = { ...service };
  if (typeof out.build === 'string') out.build = rebase(out.build);
  else if (isPlainObject(out.build)) out.build = { ...out.build, context: rebase(typeof out.build.context === 'string' ? out.build.context : '.') };
  if (typeof out.env_file === 'string') out.env_file = rebase(out.env_file);
  else if (Array.isArray(out.env_file)) {
    out.env_file = out.env_file.map((entry) => (typeof entry === 'string' ? rebase(entry) : isPlainObject(entry) && typeof entry.path === 'string' ? { ...entry, path: rebase(entry.path) } : entry));
  }
  if (Array.isArray(out.volumes)) {
    out.volumes = out.volumes.map((volume) => {
      if (isPlainObject(volume)) return volume.type === 'bind' && typeof volume.source === 'string' ? { ...volume, source: rebase(volume.source) } : volume;
      const parts = typeof volume === 'string' ? splitOutsideVariables(volume) : [];
      // Only a source starting with `.` is a relative host path; a bare name is a named volume.
      return parts.length > 1 && parts[0]!.startsWith('.') ? [rebase(parts[0]!), ...parts.slice(1)].join(':') : volume;
    });
  }
  return out;
}

// ---------------------------------------------------------------- merge

type Merger = (base: unknown, override: unknown) => unknown;

function asList(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

/** Splits at colons outside `${...}`, so `${HOST:-0.0.0.0}:80:80` has three parts. */
function splitOutsideVariables(text: string): string[] {
  const parts: string[] = [];
  let part = '';
  let depth = 0;
  for (let at = 0; at < text.length; at++) {
    if (text.startsWith('${', at)) depth++;
    else if (text[at] === '}' && depth > 0) depth--;
    if (text[at] === ':' && depth === 0) {
      parts.push(part);
      part = '';
    } else part += text[at];
  }
  return [...parts, part];
}

const isOverride = (value: unknown): value is Record<string, unknown> => isPlainObject(value) && OVERRIDE in value;

function mergeMappings(base: Record<string, unknown>, override: Record<string, unknown>, mergeKey: (key: string) => Merger): Record<string, unknown> {
  const out = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === RESET) delete out[key];
    else if (isOverride(value)) out[key] = value[OVERRIDE];
    else if (!(key in out)) out[key] = value;
    // An empty key in a later file (`environment:`) adds nothing.
    else if (value !== null) out[key] = mergeKey(key)(out[key], value);
  }
  return out;
}

/** The default: mappings deep, sequences appended, scalars replaced. */
const mergeValue: Merger = (base, override) => {
  if (isPlainObject(base) && isPlainObject(override)) return mergeMappings(base, override, () => mergeValue);
  if (Array.isArray(base) && Array.isArray(override)) return [...base, ...override];
  return override;
};

const replace: Merger = (_, override) => override;

function keyValueEntries(value: unknown): [string, unknown][] {
  if (isPlainObject(value)) return Object.entries(value);
  return asList(value).map((item) => {
    const text = String(item);
    const at = text.indexOf('=');
    return at < 0 ? [text, null] : [text.slice(0, at), text.slice(at + 1)];
  });
}

/** environment, labels, build args: by name; two KEY=VALUE lists stay a list, anything else becomes a mapping. */
const mergeKeyValues: Merger = (base, override) => {
  const merged = new Map(keyValueEntries(base));
  for (const [key, value] of keyValueEntries(override)) {
    if (value === RESET) merged.delete(key);
    else merged.set(key, value);
  }
  if (Array.isArray(base) && Array.isArray(override)) return [...merged].map(([key, value]) => (value === null ? key : `${key}=${String(value)}`));
  return Object.fromEntries(merged);
};

/** Sequences of unique entries: an entry with a known key replaces the earlier one in place. */
function uniqueBy(keyOf: (entry: unknown) => string): Merger {
  return (base, override) => {
    const out = [...asList(base)];
    const positions = new Map(out.map((entry, index) => [keyOf(entry), index]));
    for (const entry of asList(override)) {
      const key = keyOf(entry);
      const position = positions.get(key);
      if (position === undefined) {
        positions.set(key, out.length);
        out.push(entry);
      } else out[position] = entry;
    }
    return out;
  };
}

const itself = (entry: unknown) => (typeof entry === 'object' ? JSON.stringify(entry) : String(entry));

function portKey(entry: unknown): string {
  const key = (ip: unknown, published: unknown, target: unknown, protocol: unknown) => `${ip === '0.0.0.0' ? '' : String(ip ?? '')}:${String(published ?? '')}:${String(target)}/${String(protocol ?? 'tcp')}`;
  if (isPlainObject(entry)) return key(entry.host_ip, entry.published, entry.target, entry.protocol);
  const [spec, protocol] = String(entry).split('/');
  // An IPv6 host ip is written in brackets and holds colons of its own.
  const ipv6 = /^(\[[^\]]*\]):(.*)$/.exec(spec!);
  const parts = ipv6 ? [ipv6[1]!, ...splitOutsideVariables(ipv6[2]!)] : splitOutsideVariables(spec!);
  const target = parts.at(-1);
  const published = parts.length > 1 ? parts.at(-2) : '';
  return key(parts.length > 2 ? parts.slice(0, -2).join(':') : '', published, target, protocol);
}

/** The container path of a volume or device: `source:target[:mode]`, `target` alone, or the long form's target. */
function mountTarget(entry: unknown): string {
  if (isPlainObject(entry)) return String(entry.target);
  const parts = splitOutsideVariables(String(entry));
  return parts[parts.length > 1 ? 1 : 0]!;
}

const secretKey = (directory: string) => (entry: unknown) =>
  isPlainObject(entry) ? String(entry.target ?? `${directory}${String(entry.source)}`) : `${directory}${String(entry)}`;

/** depends_on, networks: by name; a list of names is a mapping of those names to `whenListed`. */
function mergeByName(whenListed: unknown): Merger {
  return (base, override) => {
    if (Array.isArray(base) && Array.isArray(override)) return uniqueBy(itself)(base, override);
    const mapping = (value: unknown) => (isPlainObject(value) ? value : Object.fromEntries(asList(value).map((name) => [String(name), structuredClone(whenListed)])));
    return mergeMappings(mapping(base), mapping(override), () => mergeValue);
  };
}

const withKeyValues = (keys: string[]): Merger => (base, override) =>
  isPlainObject(base) && isPlainObject(override) ? mergeMappings(base, override, (key) => (keys.includes(key) ? mergeKeyValues : mergeValue)) : mergeValue(base, override);

const SERVICE_RULES: Record<string, Merger> = {
  command: replace,
  entrypoint: replace,
  healthcheck: (base, override) => (isPlainObject(base) && isPlainObject(override) ? mergeMappings(base, override, (key) => (key === 'test' ? replace : mergeValue)) : mergeValue(base, override)),
  build: (base, override) => {
    if (typeof base === 'string' && typeof override === 'string') return override;
    const mapping = (value: unknown) => (typeof value === 'string' ? { context: value } : value);
    return withKeyValues(['args', 'labels'])(mapping(base), mapping(override));
  },
  deploy: withKeyValues(['labels']),
  logging: (base, override) =>
    isPlainObject(base) && isPlainObject(override) && base.driver !== undefined && override.driver !== undefined && base.driver !== override.driver ? override : mergeValue(base, override),
  depends_on: mergeByName({ condition: 'service_started' }),
  networks: mergeByName(null),
  ports: uniqueBy(portKey),
  volumes: uniqueBy(mountTarget),
  devices: uniqueBy(mountTarget),
  secrets: uniqueBy(secretKey('/run/secrets/')),
  configs: uniqueBy(secretKey('/')),
  env_file: uniqueBy((entry) => (isPlainObject(entry) ? String(entry.path) : String(entry))),
  ...Object.fromEntries(['environment', 'labels', 'annotations', 'sysctls'].map((key) => [key, mergeKeyValues])),
  ...Object.fromEntries(
    ['expose', 'dns', 'dns_search', 'dns_opt', 'cap_add', 'cap_drop', 'profiles', 'tmpfs', 'links', 'external_links', 'extra_hosts', 'security_opt', 'volumes_from', 'group_add'].map(
      (key) => [key, uniqueBy(itself)],
    ),
  ),
};

function mergeService(base: Record<string, unknown>, override: Record<string, unknown>): Record<string, unknown> {
  return mergeMappings(base, override, (key) => SERVICE_RULES[key] ?? mergeValue);
}

/** `override` (a later -f file) merged onto `base`, by the rules at the top of this file. */
export function mergeDocuments(base: Record<string, unknown>, override: Record<string, unknown>): Record<string, unknown> {
  const services: Merger = (left, right) => mergeMappings(left as Record<string, unknown>, right as Record<string, unknown>, () => (a, b) => mergeService(a as Record<string, unknown>, b as Record<string, unknown>));
  const resources: Merger = (left, right) =>
    isPlainObject(left) && isPlainObject(right) ? mergeMappings(left, right, () => withKeyValues(['labels'])) : mergeValue(left, right);
  return mergeMappings(base, override, (key) => (key === 'services' ? services : ['volumes', 'networks', 'secrets', 'configs'].includes(key) ? resources : mergeValue));
}

/** Applies what `!reset`/`!override` left in a document no later file merged onto. */
function stripMarkers(value: unknown): unknown {
  if (Array.isArray(value)) return value.filter((item) => item !== RESET).map(stripMarkers);
  if (!isPlainObject(value)) return value;
  if (isOverride(value)) return stripMarkers(value[OVERRIDE]);
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== RESET).map(([key, item]) => [key, stripMarkers(item)]));
}

// ---------------------------------------------------------------- the release file

/**
 * The compose file of a release: the merged document as written, with each pinned service's image set to
 * its digest ref and its build removed (the server has no build context, and compose refuses a build
 * path that does not exist). Everything else stays as written; the server interpolates it with its .env.
 * Written as YAML 1.1 so that compose v1 (PyYAML) reads every string back as a string (`"on"`, `"22:22"`).
 */
export function releaseCompose(raw: ComposeDocument, pinned: Record<string, string>, ports: Record<string, unknown[]> = {}): string {
  const services = Object.fromEntries(
    Object.entries(raw.services).map(([name, service]) => {
      const ref = pinned[name];
      const published = ports[name] === undefined ? service : { ...service, ports: ports[name] };
      if (ref === undefined) return [name, published];
      const { build: _build, ...rest } = published;
      return [name, { ...rest, image: ref }];
    }),
  );
  return stringify({ ...raw, services }, { version: '1.1', aliasDuplicateObjects: false, lineWidth: 0 });
}
