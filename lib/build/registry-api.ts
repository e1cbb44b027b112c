// The registry's HTTP API (v2), read-only: which manifest a tag points at. build-push uses it to skip
// pushing an image the registry already holds and to report the digest that was published.
// Credentials travel only in the Authorization header, answering the registry's own challenge:
// Basic (a plain htpasswd registry) or a Bearer token from its realm (GHCR, Docker Hub).
import { createHash } from 'node:crypto';
import { ToolError } from '../core/cli.ts';
import { registerSecret, type Secret } from '../core/secrets.ts';

/** Single-image manifests first; an index (multi-platform) is accepted so a tag never looks missing. */
export const MANIFEST_MEDIA_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
];

const REQUEST_TIMEOUT_MS = 30_000;

export interface RegistryCredentials {
  username: string;
  password: Secret;
}

export interface RemoteManifest {
  /** Digest of the manifest itself: what `image@sha256:...` pins. */
  digest: string;
  mediaType: string;
  /** Digest of the image config, which equals a local image's ID on the classic Docker image store. */
  configDigest?: string;
}

/** Docker talks plain HTTP to loopback registries and HTTPS to every other one. */
export function registryBaseUrl(registry: string): string {
  if (registry === 'docker.io') return 'https://registry-1.docker.io';
  const host = registry.replace(/:\d+$/, '');
  const loopback = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(host);
  return `${loopback ? 'http' : 'https'}://${registry}`;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. */
export function parseChallenge(header: string | null): Challenge | undefined {
  const match = /^\s*(\w+)\s*(.*)$/.exec(header ?? '');
  if (!match) return undefined;
  const params: Record<string, string> = {};
  for (const [, name, value] of match[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[name!.toLowerCase()] = value!;
  return { scheme: match[1]!.toLowerCase(), params };
}

export class RegistryClient {
  readonly #baseUrl: string;
  readonly #credentials: RegistryCredentials | undefined;
  readonly #fetch: typeof fetch;
  /** Authorization header per repository, reused so a token is fetched once. */
  readonly #authorization = new Map<string, string>();

  readonly registry: string;

  constructor(registry: string, credentials?: RegistryCredentials, fetchImpl: typeof fetch = fetch) {
    this.registry = registry;
    this.#baseUrl = registryBaseUrl(registry);
    this.#credentials = credentials;
    this.#fetch = fetchImpl;
  }

  /** The manifest `repositoryPath:reference` points at, or undefined when the registry has none. */
  async manifest(repositoryPath: string, reference: string): Promise<RemoteManifest | undefined> {
    const response = await this.#get(repositoryPath, `/v2/${repositoryPath}/manifests/${reference}`, {
      Accept: MANIFEST_MEDIA_TYPES.join(', '),
    });
    if (response.status === 404) return undefined;
    if (!response.ok) throw new ToolError(`registry ${this.registry} answered HTTP ${response.status} for ${repositoryPath}:${reference}`);
    const raw = Buffer.from(await response.arrayBuffer());
    const body = JSON.parse(raw.toString('utf8')) as { mediaType?: string; config?: { digest?: string } };
    return {
      // A manifest's digest is the sha256 of its exact bytes; the header says the same when present.
      digest: response.headers.get('docker-content-digest') ?? `sha256:${createHash('sha256').update(raw).digest('hex')}`,
      mediaType: body.mediaType ?? response.headers.get('content-type') ?? '',
      ...(body.config?.digest ? { configDigest: body.config.digest } : {}),
    };
  }

  async #get(repositoryPath: string, urlPath: string, headers: Record<string, string>): Promise<Response> {
    const url = `${this.#baseUrl}${urlPath}`;
    const send = (authorization: string | undefined) =>
      this.#fetch(url, {
        headers: { ...headers, ...(authorization ? { Authorization: authorization } : {}) },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    const known = this.#authorization.get(repositoryPath);
    const response = await send(known);
    if (response.status !== 401) return response;
    const authorization = await this.#answer(parseChallenge(response.headers.get('www-authenticate')), `repository:${repositoryPath}:pull`);
    if (!authorization || authorization === known) return response;
    this.#authorization.set(repositoryPath, authorization);
    return send(authorization);
  }

  async #answer(challenge: Challenge | undefined, scope: string): Promise<string | undefined> {
    const basic = this.#credentials
      ? `Basic ${Buffer.from(`${this.#credentials.username}:${this.#credentials.password.reveal()}`).toString('base64')}`
      : undefined;
    registerSecret(basic);
    if (challenge?.scheme === 'basic') return basic;
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) return undefined;
    const tokenUrl = new URL(challenge.params.realm);
    if (challenge.params.service) tokenUrl.searchParams.set('service', challenge.params.service);
    tokenUrl.searchParams.set('scope', challenge.params.scope ?? scope);
    const response = await this.#fetch(tokenUrl, {
      headers: basic ? { Authorization: basic } : {},
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (!response.ok) throw new ToolError(`registry ${this.registry} refused a token for ${scope} (HTTP ${response.status})`);
    const body = (await response.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new ToolError(`registry ${this.registry} sent no token for ${scope}`);
    registerSecret(token);
    return `Bearer ${token}`;
  }
}

/**
 * Each tag ref in `client`'s registry pinned to the digest the tag names now (REPO@sha256:...); digest
 * refs, refs of other registries and tags the registry does not know stay as they are.
 */
export async function pinTags(client: RegistryClient, refs: Record<string, string>): Promise<Record<string, string>> {
  const pinned = await Promise.all(
    Object.entries(refs).map(async ([service, ref]) => {
      const match = /^([^/]+)\/(.+):([^:/@]+)$/.exec(ref);
      if (ref.includes('@') || !match || match[1] !== client.registry) return [service, ref] as const;
      const manifest = await client.manifest(match[2]!, match[3]!);
      return [service, manifest ? `${match[1]}/${match[2]}@${manifest.digest}` : ref] as const;
    }),
  );
  return Object.fromEntries(pinned);
}

/**
 * pinTags against `registry` within `deadlineMs`: every request is aborted at the deadline, so none
 * outlives it (nor keeps the process alive), and the refs come back unpinned.
 */
export async function pinTagsWithin(registry: string, credentials: RegistryCredentials | undefined, refs: Record<string, string>, deadlineMs: number): Promise<Record<string, string>> {
  const deadline = AbortSignal.timeout(deadlineMs);
  const fetchWithin: typeof fetch = (input, init) => fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline });
  return pinTags(new RegistryClient(registry, credentials, fetchWithin), refs).catch(() => refs);
}
