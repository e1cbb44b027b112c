// What a run on a swarm target cannot do, or an app a swarm cannot run as written: refused in one line
// before anything connects.
import { parse as parseEnv } from 'dotenv';
import { UsageError } from '../../core/cli.ts';
import type { ComposeApp } from '../../app/compose.ts';
import { stackDocument } from './stack-file.ts';

/** The modes a swarm target does not have yet. */
const NOT_ON_SWARM: Record<string, string> = {
  diff: '--diff',
  'restore-backup': '--restore-backup',
};

/**
 * Checks, before connecting, that the app can run as a stack: the stack file is made once with the .env
 * to upload, so a container_name, a port bound to one address or replicas of a service with a named
 * volume are refused here, not under the lock.
 */
export function checkSwarmRun(app: ComposeApp, mode: string, env: string | undefined): void {
  if (NOT_ON_SWARM[mode]) throw new UsageError(`${NOT_ON_SWARM[mode]} is not available on a swarm target yet (aidd.yml target: swarm, or --target swarm)`);
  if (app.config.proxy.sites.length > 0) {
    throw new UsageError(`${app.dir}/aidd.yml proxy.sites: a swarm target does not run the reverse proxy, so it cannot serve ${app.config.proxy.sites[0]!.domain} over HTTPS; remove proxy.sites, or deploy with target: compose`);
  }
  if (env !== undefined) {
    stackDocument(app.raw, {}, app.config.swarm, parseEnv(env));
    return;
  }
  // Without an .env to upload, a published port naming a variable is checked with the server's, under the lock.
  const fixedPorts = Object.fromEntries(
    Object.entries(app.raw.services).map(([name, definition]) => [
      name,
      { ...definition, ...(Array.isArray(definition.ports) ? { ports: definition.ports.filter((entry) => !JSON.stringify(entry).includes('$')) } : {}) },
    ]),
  );
  stackDocument({ ...app.raw, services: fixedPorts }, {}, app.config.swarm, {});
}
