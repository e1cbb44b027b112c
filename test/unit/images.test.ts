// One naming of images for build-push and ssh-deploy: the compose file's image: when it names a
// repository, aidd.yml image-name under --registry/--owner otherwise.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { builtServices, checkPushable, imageName, registryHostOf, repositoryOf } from '../../lib/app/images.ts';
import { DEFAULT_COMPOSE_FILE, DEFAULT_REGISTRY_COMPOSE_FILE, REPO_ROOT } from '../../lib/app/target.ts';

const publishing = { registry: '127.0.0.1:5000', owner: 'acme' };

async function appFrom(compose: string, settings = '') {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-images-'));
  writeFileSync(path.join(dir, 'docker-compose.yml'), compose);
  writeFileSync(path.join(dir, 'aidd.yml'), settings);
  return loadComposeApp(path.join(dir, 'docker-compose.yml'), { vars: {} });
}

describe('references', () => {
  it('tell a registry host from a namespace the way docker does', () => {
    expect(registryHostOf('ghcr.io/acme/web')).toBe('ghcr.io');
    expect(registryHostOf('127.0.0.1:5000/acme/web')).toBe('127.0.0.1:5000');
    expect(registryHostOf('localhost/web')).toBe('localhost');
    expect(registryHostOf('acme/web')).toBeUndefined();
    expect(registryHostOf('web:dev')).toBeUndefined();
  });

  it('drop the tag and the digest, not a registry port', () => {
    expect(repositoryOf('127.0.0.1:5000/acme/web:1.2')).toBe('127.0.0.1:5000/acme/web');
    expect(repositoryOf(`ghcr.io/acme/web@sha256:${'a'.repeat(64)}`)).toBe('ghcr.io/acme/web');
    expect(repositoryOf('127.0.0.1:5000/acme/web')).toBe('127.0.0.1:5000/acme/web');
  });
});

describe('imageName', () => {
  it("names a plain local image (hello-web:dev) by aidd.yml image-name under the registry and owner", async () => {
    const app = await loadComposeApp(path.join(REPO_ROOT, 'examples', 'hello-compose', 'docker-compose.yml'));
    expect(builtServices(app).map((service) => service.name)).toEqual(['web', 'worker']);
    expect(imageName(app, { name: 'web' }, publishing)).toMatchObject({ repository: '127.0.0.1:5000/acme/hello-web', path: 'acme/hello-web', namedBy: 'aidd.yml' });
  });

  it("takes the registry compose file's image: with --registry and --owner interpolated, the same as the build compose gets", async () => {
    const built = await loadComposeApp(DEFAULT_COMPOSE_FILE);
    const registry = await loadComposeApp(DEFAULT_REGISTRY_COMPOSE_FILE);
    for (const service of ['api', 'bot', 'frontend']) {
      const fromRegistryFile = imageName(registry, { name: service }, publishing);
      expect(fromRegistryFile).toMatchObject({ repository: `127.0.0.1:5000/acme/aidd-${service}`, namedBy: 'compose' });
      expect(imageName(built, { name: service }, publishing).repository).toBe(fromRegistryFile.repository);
    }
    expect(builtServices(registry, publishing).map((service) => service.name)).toEqual(['api', 'bot', 'frontend']);
  });

  it('keeps an image: that names its registry, and refuses to push one that names none or another registry', async () => {
    const app = await appFrom('services:\n  web: {build: ., image: "ghcr.io/acme/web:dev"}\n  hub: {build: ., image: acme/hub}\n  other: {build: ., image: "registry.example.com/x/y"}\n');
    const web = imageName(app, { name: 'web' }, { registry: 'ghcr.io', owner: 'someone' });
    expect(web).toMatchObject({ repository: 'ghcr.io/acme/web', registry: 'ghcr.io', path: 'acme/web' });
    expect(() => checkPushable(app, { name: 'web' }, web, { registry: 'ghcr.io', owner: 'someone' })).not.toThrow();
    const hub = imageName(app, { name: 'hub' }, publishing);
    expect(hub).toMatchObject({ repository: 'docker.io/acme/hub', impliedDockerHub: true });
    expect(() => checkPushable(app, { name: 'hub' }, hub, publishing)).toThrow(/services\.hub\.image acme\/hub names no registry, so it would be pushed to Docker Hub; write its registry/);
    const other = imageName(app, { name: 'other' }, publishing);
    expect(() => checkPushable(app, { name: 'other' }, other, publishing)).toThrow(/is in the registry registry\.example\.com, but this run pushes to 127\.0\.0\.1:5000; pass --registry registry\.example\.com/);
  });

  it('builds the services with a build: section, wherever it comes from, and not the others', async () => {
    const app = await appFrom('x-build: &build\n  build: ./web\nservices:\n  web: {<<: *build, image: web:dev}\n  cache: {image: "redis:7"}\n  tool: {image: "ghcr.io/someone/tool:1"}\n');
    expect(builtServices(app, publishing).map((service) => service.name)).toEqual(['web']);
  });
});
