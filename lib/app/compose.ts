// The target app is described by its compose files (services, builds, healthchecks) and by the
// toolkit's settings in aidd.yml next to the first one. Nothing about AIDD Bot is hard-coded here.
import path from 'node:path';
import type { Command, Runner } from '../core/exec.ts';
import { projectVariables, readComposeFiles, type ComposeDocument, type ComposeFiles } from './compose-file.ts';
import { isPlainObject, type InterpolateOptions, type Variables, type VariableReference } from './interpolate.ts';
import { loadSettings, type AiddConfig } from './settings.ts';

export interface ComposeService {
  name: string;
  image?: string;
  /**
   * context and dockerfile interpolated; args as written, since planImage interpolates them with the
   * build's own variables (offline base images). A null arg takes the variable of the same name, as in compose.
   */
  build?: { context: string; dockerfile?: string; args: Record<string, string | null> };
  healthcheck?: unknown;
  ports: unknown[];
  dependsOn: string[];
  /** env_file paths, relative to the app directory. */
  envFiles: string[];
}

export interface ComposeApp {
  /** The first compose file: the one messages name. */
  file: string;
  /** Every file compose reads for the app, in order (the given ones, then an implied override file). */
  files: string[];
  /** The project directory: the first file's, where compose resolves relative paths and reads .env. */
  dir: string;
  /** The merged document before interpolation: the release file is made from it, and the server interpolates it. */
  raw: ComposeDocument;
  /** Every `${VAR}` the files use, in document order. */
  variables: VariableReference[];
  services: ComposeService[];
  config: AiddConfig;
}

export interface LoadOptions extends InterpolateOptions {
  /**
   * With a runner, Compose v2 (where `docker compose` works) merges the files for `raw`, as the server's
   * compose will; without one, or with only v1, the toolkit's own reader does.
   */
  runner?: Runner;
  /** Values for interpolation (default: the shell's environment over the app's .env, as compose does). */
  vars?: Variables;
}

/**
 * Reads an app from its compose files: several merge in order (--compose repeated, or AIDD_COMPOSE_FILE
 * comma-separated), and one default-named file brings its override file as with `docker compose up`.
 * A missing required variable reads as empty unless `onMissing: 'error'`: what the toolkit needs from the
 * interpolated files is names, builds and ports, and the values that matter are checked where they are
 * used (build args by planImage, the server's .env by compose there).
 */
export async function loadComposeApp(files: string | string[], options: LoadOptions = {}): Promise<ComposeApp> {
  const given = (Array.isArray(files) ? files : [files]).map((file) => path.resolve(file));
  const dir = path.dirname(given[0]!);
  const read = readComposeFiles(given, { vars: options.vars ?? projectVariables(dir), onMissing: options.onMissing ?? 'empty' });
  const names = Object.keys(read.interpolated.services);
  const services = names.map((name) => serviceModel(name, read.interpolated.services[name]!, read.raw.services[name]!));
  return {
    file: given[0]!,
    files: read.files,
    dir,
    raw: (options.runner && (await composeV2Document(options.runner, read, dir))) ?? read.raw,
    variables: read.variables,
    services,
    config: loadSettings(dir, names, (name) => services.find((service) => service.name === name)?.dependsOn ?? []),
  };
}

function serviceModel(name: string, spec: Record<string, unknown>, raw: Record<string, unknown>): ComposeService {
  const envFiles = (Array.isArray(spec.env_file) ? spec.env_file : spec.env_file === undefined ? [] : [spec.env_file])
    .map((entry) => (isPlainObject(entry) ? entry.path : entry))
    .filter((entry): entry is string => typeof entry === 'string');
  return {
    name,
    ...(typeof spec.image === 'string' ? { image: spec.image } : {}),
    ...(spec.build !== undefined && spec.build !== null ? { build: buildModel(spec.build, raw.build) } : {}),
    ...(spec.healthcheck !== undefined ? { healthcheck: spec.healthcheck } : {}),
    ports: Array.isArray(spec.ports) ? spec.ports : [],
    dependsOn: Array.isArray(spec.depends_on) ? spec.depends_on.map(String) : isPlainObject(spec.depends_on) ? Object.keys(spec.depends_on) : [],
    envFiles,
  };
}

function buildModel(build: unknown, raw: unknown): NonNullable<ComposeService['build']> {
  if (!isPlainObject(build)) return { context: String(build), args: {} };
  const rawArgs = isPlainObject(raw) ? raw.args : undefined;
  const args: Record<string, string | null> = {};
  if (Array.isArray(rawArgs)) {
    for (const item of rawArgs.map(String)) {
      const at = item.indexOf('=');
      if (at < 0) args[item] = null;
      else args[item.slice(0, at)] = item.slice(at + 1);
    }
  } else if (isPlainObject(rawArgs)) {
    for (const [name, value] of Object.entries(rawArgs)) args[name] = value === null || value === undefined ? null : String(value);
  }
  return {
    context: typeof build.context === 'string' ? build.context : '.',
    ...(typeof build.dockerfile === 'string' ? { dockerfile: build.dockerfile } : {}),
    args,
  };
}

/** Compose v2's merge of the files, with variables, paths and env files left as written (recent v2 flags: an older v2 refuses them). */
export function composeConfigCommand(files: string[], projectDir: string): Command {
  const target: ComposeTarget = { cli: ['docker', 'compose'], files, projectName: defaultProjectName(projectDir), projectDir };
  return composeCommand(
    target,
    // Every profile: the release file must keep the services that only some profiles start.
    ['--profile', '*', 'config', '--no-interpolate', '--no-normalize', '--no-path-resolution', '--no-env-resolution', '--format', 'json'],
    { readOnly: true, timeoutMs: 30_000 },
  );
}

/**
 * The raw document as Compose v2 merges it, when this machine has v2, its `config` takes these flags,
 * and it finds the same services as the toolkit's reader; otherwise undefined and that reader's is used.
 */
async function composeV2Document(runner: Runner, read: ComposeFiles, dir: string): Promise<ComposeDocument | undefined> {
  if ((await runner.attempt(composeVersionCommand(['docker', 'compose']))).exitCode !== 0) return undefined;
  const result = await runner.attempt(composeConfigCommand(read.files, dir));
  if (result.exitCode !== 0) return undefined;
  let document: unknown;
  try {
    document = JSON.parse(result.stdout);
  } catch {
    return undefined;
  }
  if (!isPlainObject(document) || !isPlainObject(document.services)) return undefined;
  const names = (services: object) => Object.keys(services).sort().join(' ');
  if (names(document.services) !== names(read.raw.services)) return undefined;
  // v2 always writes the project name; compose v1 on a server refuses a top-level name the files did not have.
  const { name, ...rest } = document;
  return ('name' in read.raw ? { ...rest, name } : rest) as ComposeDocument;
}

/** The project name compose derives from a directory, so both compose versions agree on it. */
export function defaultProjectName(dir: string): string {
  return path.basename(dir).toLowerCase().replace(/[^a-z0-9_-]/g, '');
}

/** `docker compose` (v2) or `docker-compose` (v1): the two spellings real machines have. */
export type ComposeCli = string[];

export const composeCandidates: ComposeCli[] = [['docker', 'compose'], ['docker-compose']];

export function composeVersionCommand(cli: ComposeCli): Command {
  return { argv: [...cli, 'version', '--short'], readOnly: true, timeoutMs: 15_000 };
}

export interface ComposeTarget {
  cli: ComposeCli;
  files: string[];
  projectName: string;
  projectDir: string;
  envFile?: string;
}

export function composeCommand(target: ComposeTarget, args: string[], extra: Partial<Command> = {}): Command {
  const argv = [...target.cli, '--project-name', target.projectName, '--project-directory', target.projectDir];
  for (const file of target.files) argv.push('--file', file);
  if (target.envFile) argv.push('--env-file', target.envFile);
  return { argv: [...argv, ...args], ...extra };
}

/** Container ids of a compose project, found by the label both compose versions set. */
export function projectContainersCommand(projectName: string): Command {
  return {
    argv: ['docker', 'ps', '--all', '--quiet', '--filter', `label=com.docker.compose.project=${projectName}`],
    readOnly: true,
    timeoutMs: 15_000,
  };
}

/** Service name, state and health of containers, one JSON object per line. */
export function containerStatusCommand(ids: string[]): Command {
  return {
    argv: [
      'docker',
      'inspect',
      '--format',
      '{"id":{{json .Id}},"service":{{json (index .Config.Labels "com.docker.compose.service")}},"state":{{json .State.Status}},"health":{{if .State.Health}}{{json .State.Health.Status}}{{else}}"none"{{end}},' +
        '"image":{{json .Config.Image}},"startedAt":{{json .State.StartedAt}},"restarts":{{json .RestartCount}}}',
      ...ids,
    ],
    readOnly: true,
    timeoutMs: 15_000,
  };
}

export interface ContainerStatus {
  id: string;
  service: string;
  state: string;
  health: string;
  /** The image as the container was created from it: a digest ref for a pinned service. */
  image?: string;
  startedAt?: string;
  /** How often docker restarted it (restart policy). */
  restarts?: number;
}

export function parseContainerStatus(stdout: string): ContainerStatus[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ContainerStatus);
}
