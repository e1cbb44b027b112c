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
  /** A hash of each service's definition in the release file, as written (variables not replaced). */
  definitions?: Record<string, string>;
  /** A hash of the values of the variables each service's definition uses. With `definitions`: unchanged means its container is kept. */
  variables?: Record<string, string>;
  routed?: RoutedService[];
  /** SERVICE:PORT -> the port the proxy serves it on at the server's loopback: where the smoke test reaches it. */
  listen?: Record<string, number>;
  /** sha256 of the proxy routes file, '' without one. */
  proxySha?: string;
  /** The release that was live when this one was deployed. */
  previous?: string | null;
  /** On a swarm: each secret of the compose file aidd.yml maps, its Swarm secret and the .env variable holding its value. */
  secrets?: Record<string, { object: string; variable: string }>;
}

export interface ReleasePlanInput {
  app: ComposeApp;
  project: string;
  id: string;
  /** The pulled images, pinned by digest, and their content keys. */
  pulled: Record<string, string>;
  contents: Record<string, string>;
  live?: ReleaseRecord;
  /** The values compose interpolates the release with: its .env where one is uploaded, else the listen variables of the live one. */
  vars: Variables;
  /** The .env is uploaded with this release (else the live release's carries over). */
  envUploaded: boolean;
  /** The uploaded .env differs from the live one: services that read env_file files are replaced. */
  envChanged: boolean;
}

export interface ReleasePlan {
  images: Record<string, string>;
  /** Services whose image content is the live release's: they keep its image, and so their containers. */
  kept: string[];
  compose: string;
  proxyConfig?: string;
  record: Pick<ReleaseRecord, 'images' | 'contents' | 'slots' | 'definitions' | 'variables' | 'routed' | 'listen' | 'proxySha'>;
  /** Routed services in start order, and the rest. */
  routed: RoutedService[];
  direct: string[];
  /** Services nothing routes to whose definition and variable values are the live release's: compose would leave them as they are. */
  settled: string[];
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

/**
 * Each service's image: the live release's where the pulled one has the same content (so its
 * container, or its swarm service, is left as it runs), else the one pulled.
 */
export function chooseImages(pulled: Record<string, string>, contents: Record<string, string>, live: ReleaseRecord | undefined): { images: Record<string, string>; kept: string[] } {
  const images: Record<string, string> = {};
  const kept: string[] = [];
  for (const [service, ref] of Object.entries(pulled)) {
    const same = live?.images?.[service] !== undefined && live.contents?.[service] !== undefined && live.contents[service] === contents[service];
    images[service] = same ? live!.images![service]! : ref;
    if (same) kept.push(service);
  }
  return { images, kept };
}

export function planRelease(input: ReleasePlanInput): ReleasePlan {
  const { app, project, live } = input;
  const { images, kept } = chooseImages(input.pulled, input.contents, live);

  const routes = proxyRoutes(app, input.vars);
  const sites = app.config.proxy.enabled ? app.config.proxy.sites : [];
  const endpoints = [...routes, ...sites].map(({ service, port }) => ({ service, port }));
  const routedNames = startOrder(app).filter((service) => endpoints.some((endpoint) => endpoint.service === service));

  // A service keeps its container (a routed one its slot) only when compose would keep it: its
  // definition as written and the values of the variables it uses are the live release's. Variables
  // are compared by a hash of their values, kept in release.json (0600, beside the .env holding them).
  const releaseDefinition = (service: string, slots: Record<string, 0 | 1>) => {
    const raw = app.raw.services[service];
    const definition: Record<string, unknown> = { ...raw, image: images[service] ?? raw?.image, ports: slotPortLists(app, routes, project, slots)[service] ?? raw?.ports };
    delete definition.build;
    return JSON.stringify(definition);
  };
  const definitionAt = (service: string, slots: Record<string, 0 | 1>) => sha256(releaseDefinition(service, slots));
  // The variables of the definition as the release file has it: a pinned image no longer reads IMAGE_TAG.
  const variablesOf = (service: string) => {
    if (!input.envUploaded) return live?.variables?.[service];
    const names = [...new Set([...releaseDefinition(service, {}).matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].map((match) => match[1]!))].sort();
    return sha256(JSON.stringify(names.map((name) => [name, input.vars[name] ?? null])));
  };
  const slots: Record<string, 0 | 1> = {};
  const definitions: Record<string, string> = {};
  const variables: Record<string, string> = {};
  const settled: string[] = [];
  for (const service of startOrder(app)) {
    const current = live?.slots?.[service];
    const readsEnvFiles = app.services.find((candidate) => candidate.name === service)?.envFiles.length ?? 0;
    const values = variablesOf(service);
    // Without an upload the live .env carries over, values and all.
    const sameValues = !input.envUploaded || (values !== undefined && live?.variables?.[service] === values);
    const same = (at: Record<string, 0 | 1>) => sameValues && live?.definitions?.[service] === definitionAt(service, at) && !(readsEnvFiles && input.envChanged);
    if (routedNames.includes(service)) {
      slots[service] = nextSlot(current, !(current !== undefined && same({ [service]: current })));
    } else if (same({})) {
      settled.push(service);
    }
    definitions[service] = definitionAt(service, slots);
    if (values !== undefined) variables[service] = values;
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
    record: { images, contents: input.contents, slots, definitions, variables, routed, listen: loopbackListen(routes), proxySha: proxyConfig ? sha256(proxyConfig) : '' },
    routed,
    direct: Object.keys(app.raw.services).filter((service) => !routedNames.includes(service)),
    settled,
  };
}

/** The routes the server reaches on 127.0.0.1: those the proxy serves on it or on every address. */
function loopbackListen(routes: ReturnType<typeof proxyRoutes>): Record<string, number> {
  const listen: Record<string, number> = {};
  for (const route of routes) {
    if (['', '127.0.0.1', '0.0.0.0'].includes(route.listen.host)) listen[`${route.service}:${route.port}`] = route.listen.port;
  }
  return listen;
}
