// argv builders for the docker CLI. Pure: they only describe commands; lib/core/exec.ts runs them.
import type { Command } from '../core/exec.ts';
import type { Secret } from '../core/secrets.ts';

export function imageExistsCommand(ref: string): Command {
  return { argv: ['docker', 'image', 'inspect', '--format', '{{.Id}}', ref], readOnly: true, timeoutMs: 30_000 };
}

export function pullCommand(ref: string, timeoutMs = 120_000): Command {
  return { argv: ['docker', 'pull', '--quiet', ref], timeoutMs };
}

export function importCommand(tarball: string, ref: string): Command {
  return { argv: ['docker', 'import', tarball, ref], timeoutMs: 600_000 };
}

export interface BuildSpec {
  context: string;
  dockerfile?: string;
  tags: string[];
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  cacheFrom?: string[];
}

export function buildCommand(spec: BuildSpec): Command {
  return { argv: ['docker', 'build', ...buildFlags(spec), spec.context], timeoutMs: 1_800_000, stream: true };
}

/** The flags every builder (legacy, BuildKit, buildx) understands alike: all but the program and the context. */
export function buildFlags(spec: BuildSpec): string[] {
  const flags: string[] = [];
  if (spec.dockerfile) flags.push('--file', spec.dockerfile);
  for (const tag of spec.tags) flags.push('--tag', tag);
  for (const [name, value] of Object.entries(spec.buildArgs ?? {})) flags.push('--build-arg', `${name}=${value}`);
  for (const [name, value] of Object.entries(spec.labels ?? {})) flags.push('--label', `${name}=${value}`);
  for (const ref of spec.cacheFrom ?? []) flags.push('--cache-from', ref);
  return flags;
}

export function dockerInfoCommand(): Command {
  return { argv: ['docker', 'info', '--format', '{{.ServerVersion}}'], readOnly: true, timeoutMs: 20_000 };
}

/** The password goes on stdin (--password-stdin), never into argv where `ps` and logs would show it. */
export function loginCommand(registry: string, username: string, password: Secret): Command {
  return { argv: ['docker', 'login', registry, '--username', username, '--password-stdin'], input: password, timeoutMs: 60_000 };
}

export function pushCommand(ref: string): Command {
  return { argv: ['docker', 'push', ref], timeoutMs: 1_800_000 };
}

/** Id, size and labels of a local image, as one JSON object. */
export function imageInspectCommand(ref: string): Command {
  return {
    argv: ['docker', 'image', 'inspect', '--format', '{"id":{{json .Id}},"size":{{json .Size}},"labels":{{json .Config.Labels}}}', ref],
    readOnly: true,
    timeoutMs: 30_000,
  };
}

export interface LocalImage {
  id: string;
  size: number;
  labels: Record<string, string>;
}

export function parseImageInspect(stdout: string): LocalImage {
  const image = JSON.parse(stdout) as { id: string; size: number; labels: Record<string, string> | null };
  return { ...image, labels: image.labels ?? {} };
}

/** A client's own version: from 23.0 on, `docker build` needs the buildx plugin for BuildKit. */
export function clientVersionCommand(client: string): Command {
  return { argv: [client, 'version', '--format', '{{.Client.Version}}'], readOnly: true, timeoutMs: 20_000 };
}

export function buildxVersionCommand(): Command {
  return { argv: ['docker', 'buildx', 'version'], readOnly: true, timeoutMs: 20_000 };
}

/** The current buildx builder; its driver decides which cache exports work. */
export function buildxInspectCommand(): Command {
  return { argv: ['docker', 'buildx', 'inspect'], readOnly: true, timeoutMs: 20_000 };
}
