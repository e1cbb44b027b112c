// The proxy's image on machines that cannot pull from Docker Hub: Debian's caddy package on a minimal
// Debian, built once and cached by its package list like the app's offline base images. Either image
// runs the same command (lib/deploy/remote-scripts.ts), so nothing else differs between them.
import { createHash } from 'node:crypto';
import { DEFAULT_PROXY_IMAGE } from '../deploy/proxy.ts';
import type { Runner } from '../core/exec.ts';
import type { Logger } from '../core/log.ts';
import { buildBaseImage } from './base-images.ts';
import { imageExistsCommand, pullCommand } from './docker.ts';

const PACKAGES = ['caddy', 'ca-certificates'];

export function offlineProxyImageTag(): string {
  return `aidd-offline-caddy:${createHash('sha256').update(`bookworm\n${PACKAGES.join('\n')}`).digest('hex').slice(0, 12)}`;
}

/** The official Caddy image when this engine has it or can pull it, otherwise the offline stand-in (built if missing). */
export async function resolveProxyImage(runner: Runner, logger: Logger): Promise<string> {
  if ((await runner.attempt(imageExistsCommand(DEFAULT_PROXY_IMAGE))).exitCode === 0) return DEFAULT_PROXY_IMAGE;
  if ((await runner.attempt(pullCommand(DEFAULT_PROXY_IMAGE, 60_000))).exitCode === 0) return DEFAULT_PROXY_IMAGE;
  const tag = offlineProxyImageTag();
  logger.warn(`${DEFAULT_PROXY_IMAGE} cannot be pulled; using ${tag}, built from Debian's caddy package`);
  if ((await runner.attempt(imageExistsCommand(tag))).exitCode !== 0) await buildBaseImage(PACKAGES, tag, runner, logger);
  return tag;
}
