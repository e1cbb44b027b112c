// The deploy a run asks for, from its flags (after the walkthrough): which image each app service runs,
// the .env to upload, checked against the app's production schema, and the revision to record. All of it
// is read and checked before anything connects.
import { readFileSync } from 'node:fs';
import { stringValue, UsageError, type Values } from '../core/cli.ts';
import type { Runner } from '../core/exec.ts';
import { registerSecret, Secret } from '../core/secrets.ts';
import type { ComposeApp } from '../app/compose.ts';
import { builtServices, imageName, type Publishing } from '../app/images.ts';
import { appCommit } from '../app/revision.ts';
import { pinTagsWithin } from '../build/registry-api.ts';
import { readEnvFile } from '../env/env-file.ts';
import { appEnvSchema } from '../env/app-env.ts';
import { findVariable, validate } from '../env/env-schema.ts';
import { DEFAULT_PROXY_IMAGE } from './proxy.ts';
import type { DeployRequest } from './engine.ts';
import type { WalkthroughResult } from './walkthrough.ts';

interface BuildOutput {
  revision?: string;
  registry?: string;
  owner?: string;
  images?: { service: string; repository: string; tags?: string[]; ref?: string | null }[];
}

interface ImageChoice {
  /** The app services whose images the toolkit deploys (pinned by digest in the release). */
  services: string[];
  refs: Record<string, string>;
  revision?: string;
}

/** Which image each app service runs: exactly what build-push made, or its registry name (lib/app/images.ts) at --tag. */
function imageRefs(values: Values, app: ComposeApp, registry: string): ImageChoice {
  const owner = stringValue(values, 'owner')?.toLowerCase();
  const imagesFrom = stringValue(values, 'images-from');
  if (imagesFrom) {
    let output: BuildOutput;
    try {
      output = JSON.parse(readFileSync(imagesFrom, 'utf8')) as BuildOutput;
    } catch {
      throw new UsageError(`--images-from ${imagesFrom} is not readable build-push --json output`);
    }
    const publishing = { registry: output.registry ?? registry, owner: output.owner ?? owner };
    // Without an owner, a registry-only compose file cannot tell its own images from others: the file's list is the set.
    const listed = (output.images ?? []).map((image) => image.service).filter((service) => app.services.some((candidate) => candidate.name === service));
    const services = publishing.owner ? builtServiceNames(app, { registry: publishing.registry, owner: publishing.owner }) : [...new Set([...builtServiceNames(app), ...listed])];
    const refs: Record<string, string> = {};
    for (const image of output.images ?? []) {
      if (services.includes(image.service)) refs[image.service] = image.ref ?? `${image.repository}:${image.tags?.[0] ?? 'latest'}`;
    }
    if (Object.keys(refs).length === 0) throw new UsageError(`--images-from ${imagesFrom} lists none of ${services.join(', ') || 'the services of the compose file'}`);
    return { services, refs, revision: output.revision };
  }
  if (!owner) throw new UsageError('no image owner given; pass --owner NAME or set IMAGE_OWNER (or --images-from FILE)');
  const tag = stringValue(values, 'tag') ?? 'latest';
  const publishing = { registry, owner };
  const services = builtServiceNames(app, publishing);
  if (services.length === 0) throw new UsageError(`${app.file} has no service with a build: section or an image under ${registry}/${owner}/; nothing to deploy`);
  return { services, refs: Object.fromEntries(services.map((service) => [service, `${imageName(app, { name: service }, publishing).repository}:${tag}`])) };
}

function builtServiceNames(app: ComposeApp, publishing?: Publishing): string[] {
  return builtServices(app, publishing).map((service) => service.name);
}

/**
 * Reads the .env to upload and checks it against the app's production schema before anything connects.
 * Every value is registered as a secret unless the app's aidd.yml declares its variable non-secret: a
 * .env often holds credentials (API keys) that no schema names, and no output, plan or error may show them.
 */
function readServerEnv(file: string, app: ComposeApp): string {
  const env = readEnvFile(file);
  if (!env) throw new UsageError(`--server-env ${file} does not exist; create it with: npx tsx scripts/setup-env.ts --target production --file ${file}`);
  const schema = appEnvSchema(app);
  for (const [name, value] of Object.entries(env.values)) {
    const declared = app.config.env?.some((variable) => variable.name === name);
    if (!declared || findVariable(schema, name)?.secret) registerSecret(value);
  }
  const problems = [
    ...env.malformed.map((line) => `line ${line.line}: ${line.reason}`),
    ...validate(env.values, schema, 'production').map((problem) => `${problem.name}: ${problem.reason}`),
  ];
  if (problems.length > 0) {
    throw new UsageError(`--server-env ${file} is not ready for production (${problems.join('; ')}); fix it with: npx tsx scripts/setup-env.ts --target production --file ${file}`);
  }
  return env.text;
}

/** The registry (--registry) and its credentials: REGISTRY_USER and REGISTRY_TOKEN (or GHCR_TOKEN), or what the walkthrough asked. */
export function registryAccess(values: Values, typed: Pick<WalkthroughResult, 'token' | 'registryUser'> = {}): Pick<DeployRequest, 'registry' | 'registryUser' | 'registryToken'> {
  const tokenValue = process.env.REGISTRY_TOKEN ?? process.env.GHCR_TOKEN;
  return {
    registry: stringValue(values, 'registry') ?? 'ghcr.io',
    registryUser: typed.registryUser ?? process.env.REGISTRY_USER,
    registryToken: typed.token ?? (tokenValue ? new Secret(tokenValue) : undefined),
  };
}

export async function deployRequestFrom(
  values: Values,
  app: ComposeApp,
  runner: Runner,
  settings: Pick<DeployRequest, 'reason' | 'keep' | 'healthTimeoutMs'>,
  typed: Pick<WalkthroughResult, 'token' | 'registryUser'>,
): Promise<{ request: DeployRequest; services: string[] }> {
  const { registry, registryUser, registryToken } = registryAccess(values, typed);
  const { services, refs, revision } = imageRefs(values, app, registry);
  const envFile = stringValue(values, 'server-env');
  const credentials = registryUser && registryToken ? { username: registryUser, password: registryToken } : undefined;
  const request: DeployRequest = {
    app,
    proxyImage: stringValue(values, 'proxy-image') ?? DEFAULT_PROXY_IMAGE,
    refs,
    registry,
    registryUser,
    registryToken,
    // Tags pinned from here while the connection opens; a registry not answering in time leaves them to the server.
    pinTags: (tags) => pinTagsWithin(registry, credentials, tags, 3_000),
    env: envFile ? readServerEnv(envFile, app) : undefined,
    // An empty .env would not do: then the server must already have one, or --server-env gives it.
    envRequired: validate({}, appEnvSchema(app), 'production').length > 0,
    revision: stringValue(values, 'revision') ?? revision,
    appRevision: await appCommit(runner, app.dir),
    noBackup: values['no-backup'] === true,
    ...settings,
  };
  return { request, services };
}

