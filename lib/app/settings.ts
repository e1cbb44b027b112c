// The toolkit's settings for an app: aidd.yml next to its compose file. Image naming, smoke checks,
// migration, backup and offline base images; everything else comes from the compose files.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../core/cli.ts';
import type { BackupSpec, MigrateSpec } from '../deploy/remote-scripts.ts';
import { parseSmokeSpecs, type HttpCheckSpec } from './smoke.ts';

export interface AiddConfig {
  /** aidd.yml next to the compose file. Registry image name per service, `{service}` replaced. */
  imageName: string;
  offlineBase?: {
    debianPackages: string[];
    /** Variable -> 'base' or a Dockerfile (relative to the compose dir) built FROM the base. */
    images: Record<string, string>;
  };
  smoke: HttpCheckSpec[];
  /** One-off migration run before a release goes live. */
  migrate?: MigrateSpec;
  /** Database dump taken before migrating. */
  backup?: BackupSpec;
}

/** Reads aidd.yml in `dir` (absent: defaults); service names are the compose file's. */
export function loadSettings(dir: string, serviceNames: string[], dependsOf: (service: string) => string[]): AiddConfig {
  const configFile = path.join(dir, 'aidd.yml');
  let raw: Record<string, unknown> = {};
  if (existsSync(configFile)) {
    try {
      raw = (parseYaml(readFileSync(configFile, 'utf8')) ?? {}) as Record<string, unknown>;
    } catch (error) {
      throw new UsageError(`${configFile} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  const offline = raw['offline-base'] as { 'debian-packages'?: string[]; images?: Record<string, string> } | undefined;
  const migrate = raw.migrate as { service?: string; command?: string[] } | undefined;
  const backup = raw.backup as { service?: string; command?: string; extension?: string } | undefined;
  for (const [block, service] of [['migrate', migrate?.service], ['backup', backup?.service]] as const) {
    if (raw[block] !== undefined && !serviceNames.includes(service ?? '')) {
      throw new UsageError(`${configFile}: ${block}.service must name one of ${serviceNames.join(', ')}`);
    }
  }
  return {
    imageName: typeof raw['image-name'] === 'string' ? raw['image-name'] : '{service}',
    offlineBase: offline && {
      debianPackages: offline['debian-packages'] ?? [],
      images: offline.images ?? {},
    },
    smoke: parseSmokeOrFail(raw.smoke, configFile),
    migrate: migrate && { service: migrate.service!, command: migrate.command ?? [], needs: dependsOf(migrate.service!) },
    backup: backup && { service: backup.service!, command: backup.command ?? '', extension: backup.extension ?? 'dump' },
  };
}

function parseSmokeOrFail(raw: unknown, file: string): HttpCheckSpec[] {
  try {
    return parseSmokeSpecs(raw);
  } catch (error) {
    throw new UsageError(`${file}: ${(error as Error).message}`);
  }
}
