import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseChallenge, pinTags, pinTagsWithin, RegistryClient, registryBaseUrl } from '../../lib/build/registry-api.ts';
import { redact, Secret } from '../../lib/core/secrets.ts';

const MANIFEST = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
  config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: 'sha256:config', size: 1 },
  layers: [],
});

interface Call {
  url: string;
  authorization: string | undefined;
  accept: string | undefined;
}

/** A fake registry: answers from a handler and records every request. */
function fakeFetch(handler: (call: Call) => Response): { fetch: typeof fetch; calls: Call[] } {
  const calls: Call[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    const call = { url: String(input), authorization: headers.get('authorization') ?? undefined, accept: headers.get('accept') ?? undefined };
    calls.push(call);
    return handler(call);
  }) as typeof fetch;
  return { fetch: fetchImpl, calls };
}

const credentials = { username: 'me', password: new Secret('registry-pass-4321') };
const basic = `Basic ${Buffer.from('me:registry-pass-4321').toString('base64')}`;

describe('registry addresses and challenges', () => {
  it('uses plain HTTP only for loopback registries, as docker does', () => {
    expect(registryBaseUrl('127.0.0.1:5000')).toBe('http://127.0.0.1:5000');
    expect(registryBaseUrl('localhost:5000')).toBe('http://localhost:5000');
    expect(registryBaseUrl('ghcr.io')).toBe('https://ghcr.io');
    expect(registryBaseUrl('docker.io')).toBe('https://registry-1.docker.io');
  });

  it('parses Basic and Bearer challenges', () => {
    expect(parseChallenge('Basic realm="aidd-registry"')).toEqual({ scheme: 'basic', params: { realm: 'aidd-registry' } });
    expect(parseChallenge('Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/aidd-api:pull"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://ghcr.io/token', service: 'ghcr.io', scope: 'repository:acme/aidd-api:pull' },
    });
    expect(parseChallenge(null)).toBeUndefined();
  });
});

describe('RegistryClient', () => {
  it('answers a Basic challenge with the credentials and reads digest and config digest', async () => {
    const registry = fakeFetch((call) =>
      call.authorization === basic
        ? new Response(MANIFEST, { headers: { 'Docker-Content-Digest': 'sha256:manifest' } })
        : new Response('{}', { status: 401, headers: { 'WWW-Authenticate': 'Basic realm="aidd-registry"' } }),
    );
    const client = new RegistryClient('127.0.0.1:5000', credentials, registry.fetch);
    expect(await client.manifest('acme/aidd-api', 'latest')).toEqual({
      digest: 'sha256:manifest',
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      configDigest: 'sha256:config',
    });
    expect(registry.calls.map((call) => call.url)).toEqual([
      'http://127.0.0.1:5000/v2/acme/aidd-api/manifests/latest',
      'http://127.0.0.1:5000/v2/acme/aidd-api/manifests/latest',
    ]);
    expect(registry.calls[0]!.accept).toContain('application/vnd.oci.image.manifest.v1+json');
    // The password never appears in a URL, and the Authorization value is redacted if printed.
    expect(registry.calls.some((call) => call.url.includes('registry-pass-4321'))).toBe(false);
    expect(redact(basic)).toBe('[REDACTED]');
  });

  it('exchanges the credentials for a Bearer token once per repository (GHCR, Docker Hub)', async () => {
    const registry = fakeFetch((call) => {
      if (call.url.startsWith('https://ghcr.io/token')) {
        return call.authorization === basic ? Response.json({ token: 'bearer-token-9876' }) : new Response('', { status: 401 });
      }
      if (call.authorization === 'Bearer bearer-token-9876') return new Response(MANIFEST, { headers: { 'Docker-Content-Digest': 'sha256:manifest' } });
      return new Response('{}', {
        status: 401,
        headers: { 'WWW-Authenticate': 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/aidd-api:pull"' },
      });
    });
    const client = new RegistryClient('ghcr.io', credentials, registry.fetch);
    await client.manifest('acme/aidd-api', 'latest');
    await client.manifest('acme/aidd-api', 'v1');
    const tokenCalls = registry.calls.filter((call) => call.url.startsWith('https://ghcr.io/token'));
    expect(tokenCalls).toHaveLength(1);
    const tokenUrl = new URL(tokenCalls[0]!.url);
    expect(tokenUrl.searchParams.get('service')).toBe('ghcr.io');
    expect(tokenUrl.searchParams.get('scope')).toBe('repository:acme/aidd-api:pull');
    expect(registry.calls.at(-1)!.authorization).toBe('Bearer bearer-token-9876');
    expect(redact('Bearer bearer-token-9876')).toBe('Bearer [REDACTED]');
  });

  it('returns undefined for a tag the registry does not have, and fails on other errors', async () => {
    const missing = new RegistryClient('127.0.0.1:5000', undefined, fakeFetch(() => new Response('{}', { status: 404 })).fetch);
    expect(await missing.manifest('acme/aidd-api', 'latest')).toBeUndefined();
    const broken = new RegistryClient('127.0.0.1:5000', undefined, fakeFetch(() => new Response('{}', { status: 500 })).fetch);
    await expect(broken.manifest('acme/aidd-api', 'latest')).rejects.toThrow('registry 127.0.0.1:5000 answered HTTP 500 for acme/aidd-api:latest');
  });

  it('computes the digest from the manifest bytes when the header is missing', async () => {
    const client = new RegistryClient('127.0.0.1:5000', undefined, fakeFetch(() => new Response(MANIFEST)).fetch);
    const expected = `sha256:${createHash('sha256').update(MANIFEST).digest('hex')}`;
    expect((await client.manifest('acme/aidd-api', 'latest'))?.digest).toBe(expected);
  });
});

describe('pinTags', () => {
  it("pins the registry's tags to the digests they name now; digest refs, other registries and unknown tags stay", async () => {
    const registry = fakeFetch((call) =>
      call.url.endsWith('/manifests/missing')
        ? new Response('{}', { status: 404 })
        : new Response(MANIFEST, { status: 200, headers: { 'docker-content-digest': `sha256:${call.url.includes('/api/') ? 'aa' : 'ff'}` } }),
    );
    const pinned = await pinTags(new RegistryClient('127.0.0.1:5000', undefined, registry.fetch), {
      api: '127.0.0.1:5000/me/api:v2',
      web: '127.0.0.1:5000/me/web@sha256:00',
      db: 'postgres:16-alpine',
      other: 'ghcr.io/me/api:v2',
      gone: '127.0.0.1:5000/me/api:missing',
    });
    expect(pinned).toEqual({
      api: '127.0.0.1:5000/me/api@sha256:aa',
      web: '127.0.0.1:5000/me/web@sha256:00',
      db: 'postgres:16-alpine',
      other: 'ghcr.io/me/api:v2',
      gone: '127.0.0.1:5000/me/api:missing',
    });
    expect(registry.calls.map((call) => call.url).sort()).toEqual(['http://127.0.0.1:5000/v2/me/api/manifests/missing', 'http://127.0.0.1:5000/v2/me/api/manifests/v2']);
  });

  it('leaves the tags as they are when the registry does not answer within the deadline', async () => {
    // A registry on loopback that accepts the connection and never answers.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const refs = { api: `${address}/me/api:v2` };
      const started = Date.now();
      expect(await pinTagsWithin(address, undefined, refs, 300)).toEqual(refs);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });
});
