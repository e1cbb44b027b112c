// Which app the toolkit works on: the built-in AIDD Bot reference stack unless --compose says otherwise.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ToolError } from '../core/cli.ts';
import { subcommandOf } from '../core/subcommands.ts';
import { composeCandidates, composeVersionCommand, type ComposeCli } from './compose.ts';
import type { Command, Runner } from '../core/exec.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_COMPOSE_FILE = path.join(REPO_ROOT, 'examples', 'aidd-bot', 'docker-compose.yml');
/** What runs on a server: the same services from registry images. */
export const DEFAULT_REGISTRY_COMPOSE_FILE = path.join(REPO_ROOT, 'examples', 'aidd-bot', 'docker-compose.registry.yml');
/** Where the sandbox registry and sshd of the tests and the rehearsal live. */
export const SANDBOX_DIR = process.env.AIDD_SANDBOX_DIR ?? path.join(REPO_ROOT, '.cache', 'sandbox');

/** Finds the compose CLI a machine has: v2 first, as real servers mostly run it, then v1. */
export async function detectComposeCli(runner: Runner, wrap: (command: Command) => Command = (command) => command): Promise<ComposeCli> {
  for (const cli of composeCandidates) {
    if ((await runner.attempt(wrap(composeVersionCommand(cli)))).exitCode === 0) return cli;
  }
  throw new ToolError('neither `docker compose` (v2) nor `docker-compose` (v1) works here; install Docker Compose');
}

/**
 * argv that runs one of the toolkit's scripts as `npm run NAME` does: through the `aidd` command, where
 * node strips the types itself (22.18+, no loader: tsx adds about 0.6 s to every start) and caches the
 * compiled code. `npx tsx scripts/NAME.ts` runs the same code; test/cli covers that way.
 */
export function scriptArgv(script: string, args: string[] = []): string[] {
  return aiddArgv([subcommandOf(script), ...args]);
}

/** argv of the `aidd` command as the package's bin runs it. */
export function aiddArgv(args: string[]): string[] {
  return [process.execPath, path.join(REPO_ROOT, 'bin', 'aidd.js'), ...args];
}
