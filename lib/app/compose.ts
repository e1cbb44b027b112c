// The target app is described by its compose file (services, builds, healthchecks) and by the
// toolkit's settings in aidd.yml next to it. Nothing about AIDD Bot is hard-coded here.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../core/cli.ts';
import type { Command } from '../core/exec.ts';
import { loadSettings, type AiddConfig } from './settings.ts';

export interface ComposeService {
  name: string;
  image?: string;
  build?: { context: string; dockerfile?: string; args?: Record<string, string> };
  healthcheck?: unknown;
  ports?: unknown[];
  dependsOn: string[];
}

export interface ComposeApp {
  file: string;
  dir: string;
  text: string;
  services: ComposeService[];
  config: AiddConfig;
}

export function loadComposeApp(file: string): ComposeApp {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`compose file ${file} cannot be read; pass --compose PATH to your docker-compose.yml`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseYaml(text) as Record<string, unknown>;
  } catch (error) {
    throw new UsageError(`compose file ${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  const services = doc?.services;
  if (!services || typeof services !== 'object') throw new UsageError(`compose file ${file} has no services: section`);
  const dependsOf = (name: string): string[] => {
    const spec = (services as Record<string, Record<string, unknown>>)[name]!;
    return Array.isArray(spec.depends_on) ? (spec.depends_on as string[]) : Object.keys(spec.depends_on ?? {});
  };
  return {
    file: path.resolve(file),
    dir: path.dirname(path.resolve(file)),
    text,
    services: Object.entries(services as Record<string, Record<string, unknown>>).map(([name, spec]) => ({
      name,
      image: spec.image as string | undefined,
      build: normalizeBuild(spec.build),
      healthcheck: spec.healthcheck,
      ports: spec.ports as unknown[] | undefined,
      dependsOn: dependsOf(name),
    })),
    config: loadSettings(path.dirname(path.resolve(file)), Object.keys(services), dependsOf),
  };
}

/** The project name compose derives from a directory, so both compose versions agree on it. */
export function defaultProjectName(dir: string): string {
  return path.basename(dir).toLowerCase().replace(/[^a-z0-9_-]/g, '');
}

function normalizeBuild(build: unknown): ComposeService['build'] {
  if (build === undefined || build === null) return undefined;
  if (typeof build === 'string') return { context: build };
  return build as ComposeService['build'];
}

/** The `${VAR:-default}` defaults written in a compose file, so config never repeats them. */
export function interpolationDefaults(text: string): Record<string, string> {
  const defaults: Record<string, string> = {};
  for (const match of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):?-([^}]*)\}/g)) {
    defaults[match[1]!] ??= match[2]!;
  }
  return defaults;
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
      '{"service":{{json (index .Config.Labels "com.docker.compose.service")}},"state":{{json .State.Status}},"health":{{if .State.Health}}{{json .State.Health.Status}}{{else}}"none"{{end}}}',
      ...ids,
    ],
    readOnly: true,
    timeoutMs: 15_000,
  };
}

export interface ContainerStatus {
  service: string;
  state: string;
  health: string;
}

export function parseContainerStatus(stdout: string): ContainerStatus[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ContainerStatus);
}
