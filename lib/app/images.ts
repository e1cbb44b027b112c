// Where each of an app's images lives in a registry: build-push tags and pushes it there, ssh-deploy
// pulls it from there. One function for both, so the two can never disagree about a name.
import { UsageError } from '../core/cli.ts';
import type { ComposeApp, ComposeService } from './compose.ts';
import { projectVariables } from './compose-file.ts';
import { interpolate } from './interpolate.ts';

/** The registry and namespace given by --registry and --owner (REGISTRY, IMAGE_OWNER). */
export interface Publishing {
  registry: string;
  owner: string;
}

export interface ImageName {
  /** REGISTRY/PATH without tag or digest. */
  repository: string;
  registry: string;
  /** The repository's path inside the registry (its API addresses it so). */
  path: string;
  /** Who named it: the compose file's image:, or aidd.yml image-name under REGISTRY/OWNER. */
  namedBy: 'compose' | 'aidd.yml';
  /** The compose file's image: names a repository without a registry host: Docker Hub by docker's rule. */
  impliedDockerHub: boolean;
}

/** Docker's rule: the first component of a reference names a registry when it has a dot or a port, or is localhost. */
export function registryHostOf(reference: string): string | undefined {
  const slash = reference.indexOf('/');
  if (slash < 0) return undefined;
  const first = reference.slice(0, slash);
  return /[.:]/.test(first) || first === 'localhost' ? first : undefined;
}

/** A reference without its tag and digest. */
export function repositoryOf(reference: string): string {
  const name = reference.split('@')[0]!;
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? name.slice(0, colon) : name;
}

/**
 * A service's image name. An `image:` that names a repository (it has a `/`) is used as written, with
 * REGISTRY and IMAGE_OWNER interpolated from the flags; without a registry host it is Docker Hub's. A
 * plain local name (`web`, `web:dev`) or no `image:` gets REGISTRY/OWNER/<aidd.yml image-name>.
 */
export function imageName(app: Pick<ComposeApp, 'dir' | 'file' | 'raw' | 'config'>, service: Pick<ComposeService, 'name'>, publishing: Publishing): ImageName {
  const written = app.raw.services[service.name]?.image;
  if (typeof written === 'string') {
    const vars = { ...projectVariables(app.dir), REGISTRY: publishing.registry, IMAGE_OWNER: publishing.owner };
    const image = repositoryOf(interpolate(written, vars, `${app.file} services.${service.name}.image`, { onMissing: 'empty' }));
    if (image.includes('/')) {
      const host = registryHostOf(image);
      return { repository: host ? image : `docker.io/${image}`, registry: host ?? 'docker.io', path: host ? image.slice(host.length + 1) : image, namedBy: 'compose', impliedDockerHub: !host };
    }
  }
  const path = `${publishing.owner}/${app.config.imageName.replace('{service}', service.name)}`.toLowerCase();
  return { repository: `${publishing.registry}/${path}`, registry: publishing.registry, path, namedBy: 'aidd.yml', impliedDockerHub: false };
}

/**
 * A push goes to the one registry the run logged in to: an image: naming no registry would land on
 * Docker Hub by accident, and one naming another registry would be pushed without its credentials.
 */
export function checkPushable(app: Pick<ComposeApp, 'file'>, service: Pick<ComposeService, 'name'>, name: ImageName, publishing: Publishing): void {
  const where = `${app.file}: services.${service.name}.image ${name.path}`;
  if (name.impliedDockerHub) {
    throw new UsageError(`${where} names no registry, so it would be pushed to Docker Hub; write its registry (e.g. ghcr.io/${name.path} or docker.io/${name.path}), or a plain name (${service.name}) to publish under --registry/--owner`);
  }
  if (name.registry !== publishing.registry) {
    throw new UsageError(`${where} is in the registry ${name.registry}, but this run pushes to ${publishing.registry}; pass --registry ${name.registry}`);
  }
}

/**
 * The services whose images the toolkit builds and deploys: those with a `build:` section, and, in a
 * registry-only compose file, those whose image lives under REGISTRY/OWNER (when they are known).
 */
export function builtServices(app: ComposeApp, publishing?: Publishing): ComposeService[] {
  const namespace = publishing && `${publishing.registry}/${publishing.owner}/`.toLowerCase();
  return app.services.filter((service) => {
    if (service.build) return true;
    const name = namespace ? imageName(app, service, publishing!) : undefined;
    return name?.namedBy === 'compose' && name.repository.toLowerCase().startsWith(namespace!);
  });
}
