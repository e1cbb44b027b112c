// What a new release is, decided under the lock from the images just pulled and the live release's
// record: which image each service runs, which slot each routed service's container publishes on,
// the release's compose file and the proxy's routes for it. Pure, so tests cover every branch.
import { createHash } from 'node:crypto';
import type { ComposeApp } from '../app/compose.ts';
import { releaseCompose } from '../app/compose-file.ts';
import type { Variables } from '../app/interpolate.ts';
import { appProxyConfig, nextSlot, proxyRoutes, slotPort, slotPortLists } from './proxy.ts';
import type { RoutedService } from './remote-scripts.ts';

/** What release.json records about a release. */
export interface ReleaseRecord {
  id?: string;
  revision?: string;
  /** The image ref each service runs, pinned by digest. */
  images?: Record<string, string>;
  /** Each image's content key (remote-scripts.ts CONTENT_KEY_FORMAT). */
  contents?: Record<string, string>;
  /** The slot each routed service's container publishes on. */
  slots?: Record<string, 0 | 1>;
  /** A hash of each routed service's definition in the release file: unchanged means its container is kept. */
  definitions?: Record<string, string>;
  routed?: RoutedService[];
  /** sha256 of the proxy routes file, '' without one. */
  proxySha?: string;
  /** The release that was live when this one was deployed. */
  previous?: string | null;
}

export interface ReleasePlanInput {
  app: ComposeApp;
  project: string;
  id: string;
  /** The pulled images, pinned by digest, and their content keys. */
  pulled: Record<string, string>;
  contents: Record<string, string>;
  live?: ReleaseRecord;
  /** The values compose interpolates the release with (its .env). */
  vars: Variables;
  /** The release gets another .env than the live one: every routed service is replaced. */
  envChanged: boolean;
}

export interface ReleasePlan {
  images: Record<string, string>;
  /** Services whose image content is the live release's: they keep its image, and so their containers. */
  kept: string[];
  compose: string;
  proxyConfig?: string;
  record: Pick<ReleaseRecord, 'images' | 'contents' | 'slots' | 'definitions' | 'routed' | 'proxySha'>;
  /** Routed services in start order, and the rest. */
  routed: RoutedService[];
  direct: string[];
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Services in an order where each comes after what it depends on. */
export function startOrder(app: ComposeApp): string[] {
  const order: string[] = [];
  const visit = (name: string, path: string[]) => {
    if (order.includes(name) || path.includes(name)) return;
    for (const dependency of app.services.find((service) => service.name === name)?.dependsOn ?? []) visit(dependency, [...path, name]);
    order.push(name);
  };
  for (const service of app.services) visit(service.name, []);
  return order;
}

export function planRelease(input: ReleasePlanInput): ReleasePlan {
  const { app, project, live } = input;
  const images: Record<string, string> = {};
  const kept: string[] = [];
  for (const [service, ref] of Object.entries(input.pulled)) {
    const same = live?.images?.[service] !== undefined && live.contents?.[service] !== undefined && live.contents[service] === input.contents[service];
    images[service] = same ? live!.images![service]! : ref;
    if (same) kept.push(service);
  }

  const routes = proxyRoutes(app, input.vars);
  const sites = app.config.proxy.enabled ? app.config.proxy.sites : [];
  const endpoints = [...routes, ...sites].map(({ service, port }) => ({ service, port }));
  const routedNames = startOrder(app).filter((service) => endpoints.some((endpoint) => endpoint.service === service));

  // A routed service keeps its slot (and container) only when its definition is the live one's.
  const definitionAt = (service: string, slots: Record<string, 0 | 1>) => {
    const definition: Record<string, unknown> = { ...app.raw.services[service], image: images[service] ?? app.raw.services[service]?.image, ports: slotPortLists(app, routes, project, slots)[service] };
    delete definition.build;
    return sha256(JSON.stringify(definition));
  };
  const slots: Record<string, 0 | 1> = {};
  const definitions: Record<string, string> = {};
  for (const service of routedNames) {
    const current = live?.slots?.[service];
    const unchanged = current !== undefined && !input.envChanged && live?.definitions?.[service] === definitionAt(service, { [service]: current });
    slots[service] = nextSlot(current, !unchanged);
    definitions[service] = definitionAt(service, slots);
  }

  const compose = releaseCompose(app.raw, images, slotPortLists(app, routes, project, slots));
  const proxyConfig = routedNames.length ? appProxyConfig(app, project, routes) : undefined;
  const routed = routedNames.map((service) => {
    const { port } = endpoints.find((endpoint) => endpoint.service === service)!;
    return { service, port, hostPort: slotPort(project, service, port, slots[service]!) };
  });
  return {
    images,
    kept,
    compose,
    proxyConfig,
    record: { images, contents: input.contents, slots, definitions, routed, proxySha: proxyConfig ? sha256(proxyConfig) : '' },
    routed,
    direct: Object.keys(app.raw.services).filter((service) => !routedNames.includes(service)),
  };
}
