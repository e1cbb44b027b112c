// The reverse proxy in front of an app's HTTP services on the server: one Caddy container per server
// (`aidd-proxy`, host network, restarted by docker), shared by every app deployed there. Each app owns
// one file of routes in it (apps/PROJECT.caddy), so deploying one app never touches another's routes.
//
// Why Caddy: a config reload is graceful (in-flight requests finish on the old config), it gets and
// renews certificates by itself (ACME, or its internal CA for tests and private names), it retries a
// request on another attempt while an upstream restarts, and Debian ships it, so machines without
// Docker Hub can build its image from a package like the other offline base images.
//
// How a switch stays invisible: the proxy listens where the compose file publishes an HTTP port (e.g.
// 127.0.0.1:8000) and sends requests to the first of the service's two loopback "slot" ports whose
// container passes the proxy's own health check. Each release of a changed service takes the other
// slot, so the new container starts beside the old one; the proxy sends it requests once it answers
// its health path, and the old one is stopped only after docker calls the new one healthy (a request
// to a stopped container is retried on the other slot). The routes never change during a switch, so
// the proxy is not reloaded: a reload closes the idle keep-alive connections of every client, and a
// client that sends a request on one at that moment gets a reset. Fixed slot ports (not ephemeral ones)
// survive a server reboot: docker gives a container its ephemeral ports anew on each start.
import { createHash } from 'node:crypto';
import type { ComposeApp } from '../app/compose.ts';
import { interpolate, isPlainObject, type Variables } from '../app/interpolate.ts';
import { UsageError } from '../core/cli.ts';

export const PROXY_CONTAINER = 'aidd-proxy';
/** The official image; on machines without Docker Hub, lib/build/proxy-image.ts builds a stand-in. */
export const DEFAULT_PROXY_IMAGE = 'caddy:2';
/** Where Caddy reads its config and keeps its certificates: named volumes, so a new proxy container keeps both. */
export const PROXY_VOLUMES = { config: 'aidd-proxy-config', data: 'aidd-proxy-data' } as const;
/** Inside the proxy container. */
export const PROXY_CONFIG_DIR = '/etc/caddy';
/** The admin API on a unix socket inside the container: nothing listens on a host port for it. */
export const PROXY_ADMIN_SOCKET = '/run/aidd-proxy-admin.sock';

/** Slot ports: below Linux's ephemeral range (32768+), so docker never hands them to another container. */
const SLOT_BASE = 20_000;
const SLOT_PAIRS = 6_000;

/** An HTTP port of a service that the compose file publishes, served by the proxy at `listen`. */
export interface ProxyRoute {
  service: string;
  /** The container port. */
  port: number;
  /** The index of the entry in the service's ports: list, which the release file replaces. */
  entry: number;
  /** Where the compose file publishes it, and so where the proxy listens; host '' means every address. */
  listen: { host: string; port: number };
}

interface PortEntry {
  host: string;
  published: string;
  target: string;
  protocol: string;
}

/** A ports: entry, short ("127.0.0.1:8000:8000/tcp", "[::1]:80:80") or long syntax, already interpolated. */
export function parsePortEntry(entry: unknown): PortEntry | undefined {
  if (isPlainObject(entry)) {
    return { host: String(entry.host_ip ?? ''), published: String(entry.published ?? ''), target: String(entry.target ?? ''), protocol: String(entry.protocol ?? 'tcp') };
  }
  if (typeof entry !== 'string' && typeof entry !== 'number') return undefined;
  const [spec = '', protocol = 'tcp'] = String(entry).split('/');
  let host = '';
  let rest = spec;
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(spec);
  if (bracketed) [, host = '', rest = ''] = bracketed;
  const parts = rest.split(':');
  if (!bracketed && parts.length === 3) host = parts.shift()!;
  if (parts.length === 1) return { host, published: '', target: parts[0]!, protocol };
  if (parts.length === 2) return { host, published: parts[0]!, target: parts[1]!, protocol };
  return undefined;
}

/**
 * The app's published HTTP ports: entries of a service's ports: whose container port aidd.yml names
 * as HTTP (smoke checks, proxy.http, proxy.sites) and which publish one fixed TCP port. Other ports
 * (a database published on purpose, ranges, random host ports) stay as the compose file says.
 * `vars` are the values compose interpolates with on the server (the release's .env).
 */
export function proxyRoutes(app: ComposeApp, vars: Variables): ProxyRoute[] {
  if (!app.config.proxy.enabled) return [];
  const routes: ProxyRoute[] = [];
  for (const [service, definition] of Object.entries(app.raw.services)) {
    const http = new Set(app.config.proxy.http.filter((route) => route.service === service).map((route) => route.port));
    const entries = (Array.isArray(definition.ports) ? definition.ports : []).map((raw, entry) => {
      const text = (value: unknown) => (typeof value === 'string' ? interpolate(value, vars, `services.${service}.ports[${entry}]`, { onMissing: 'empty' }) : value);
      return parsePortEntry(isPlainObject(raw) ? Object.fromEntries(Object.entries(raw).map(([key, value]) => [key, text(value)])) : text(raw));
    });
    const routed = entries.flatMap((parsed, entry) =>
      parsed && parsed.protocol === 'tcp' && /^\d+$/.test(parsed.published) && /^\d+$/.test(parsed.target) && http.has(Number(parsed.target))
        ? [{ service, port: Number(parsed.target), entry, listen: { host: parsed.host === '0.0.0.0' ? '' : parsed.host, port: Number(parsed.published) } }]
        : [],
    );
    if (routed.length === 0) continue;
    if (definition.container_name !== undefined) {
      throw new UsageError(`${app.file}: services.${service}.container_name: a routed service runs two containers during a switch, so compose must name them; remove container_name, or set proxy.enabled: false in aidd.yml`);
    }
    // Two containers of a routed service run side by side during a switch: no other port may be fixed.
    const fixed = entries.findIndex((parsed, entry) => parsed && parsed.published !== '' && !routed.some((route) => route.entry === entry));
    if (fixed >= 0) {
      throw new UsageError(
        `${app.file}: services.${service}.ports[${fixed}]: a service the proxy routes to runs two containers during a switch, so it cannot publish another fixed port; route it too (aidd.yml proxy.http), publish it without a host port, or set proxy.enabled: false`,
      );
    }
    routes.push(...routed);
  }
  return routes;
}

/** The variables the compose file's ports: entries use: the deploy needs their values from the server's .env. */
export function listenVariables(app: ComposeApp): string[] {
  const names = new Set<string>();
  for (const definition of Object.values(app.raw.services)) {
    for (const match of JSON.stringify(definition.ports ?? []).matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) names.add(match[1]!);
  }
  return [...names];
}

/**
 * The loopback host port a service's container port takes in slot 0 or 1. Derived from the project,
 * service and port, so every deploy of an app agrees on it without asking the server; two apps
 * colliding is possible but rare, and the switch then fails on the busy port without touching the live one.
 */
export function slotPort(project: string, service: string, port: number, slot: 0 | 1): number {
  const pair = createHash('sha256').update(`${project}\n${service}\n${port}`).digest().readUInt32BE(0) % SLOT_PAIRS;
  return SLOT_BASE + pair * 2 + slot;
}

/** The slot a service's container takes in a new release: the current one if it is kept, the other one if it is replaced. */
export function nextSlot(current: 0 | 1 | undefined, replaced: boolean): 0 | 1 {
  if (current === undefined) return 0;
  return replaced ? (current === 0 ? 1 : 0) : current;
}

/**
 * The ports: lists of the services the proxy reaches, as the release file has them: each routed entry
 * becomes the slot port on loopback only, and a service an HTTPS site points at, but whose port the
 * compose file does not publish, gets one. Other entries stay as written.
 */
export function slotPortLists(app: ComposeApp, routes: ProxyRoute[], project: string, slots: Record<string, 0 | 1>): Record<string, unknown[]> {
  const lists: Record<string, unknown[]> = {};
  const entry = (service: string, port: number) => `127.0.0.1:${slotPort(project, service, port, slots[service] ?? 0)}:${port}`;
  const listOf = (service: string) => (lists[service] ??= [...(Array.isArray(app.raw.services[service]?.ports) ? (app.raw.services[service]!.ports as unknown[]) : [])]);
  for (const route of routes) listOf(route.service)[route.entry] = entry(route.service, route.port);
  for (const site of app.config.proxy.enabled ? app.config.proxy.sites : []) {
    if (!routes.some((route) => route.service === site.service && route.port === site.port)) listOf(site.service).push(entry(site.service, site.port));
  }
  return lists;
}

function bindAddress(host: string): string {
  return host.replace(/^\[(.*)\]$/, '$1');
}

/** How often the proxy checks each slot: a new container gets requests at most this long after it is ready. */
export const PROXY_HEALTH_INTERVAL_MS = 1_000;

function reverseProxy(project: string, service: string, port: number, health: string): string[] {
  return [
    `\treverse_proxy 127.0.0.1:${slotPort(project, service, port, 0)} 127.0.0.1:${slotPort(project, service, port, 1)} {`,
    // Both slots, the first healthy one serving: only one has a container outside a switch.
    '\t\tlb_policy first',
    `\t\thealth_uri ${health}`,
    `\t\thealth_interval ${PROXY_HEALTH_INTERVAL_MS}ms`,
    '\t\thealth_timeout 3s',
    // While no slot is available (a container stopping, the other not yet checked), a request waits and retries.
    '\t\tlb_try_duration 10s',
    '\t\tlb_try_interval 50ms',
    '\t}',
  ];
}

/**
 * The proxy's routes for one app (apps/PROJECT.caddy): one site per routed port and per HTTPS domain.
 * It names both slots of each service, so it stays the same from release to release.
 */
export function appProxyConfig(app: ComposeApp, project: string, routes: ProxyRoute[]): string {
  const health = (service: string, port: number) => app.config.proxy.http.find((route) => route.service === service && route.port === port)?.health ?? '/';
  const lines = [`# ${project}: written by aidd-devops on each deploy; edits are overwritten.`];
  for (const route of routes) {
    lines.push(`http://:${route.listen.port} {`);
    if (route.listen.host) lines.push(`\tbind ${bindAddress(route.listen.host)}`);
    lines.push(...reverseProxy(project, route.service, route.port, health(route.service, route.port)), '}');
  }
  for (const site of app.config.proxy.enabled ? app.config.proxy.sites : []) {
    const [, host = '', port = '443'] = site.listen ? /^(.*):(\d+)$/.exec(site.listen) ?? [] : [];
    lines.push(`https://${site.domain}${port === '443' ? '' : `:${port}`} {`);
    if (host) lines.push(`\tbind ${bindAddress(host)}`);
    if (site.tls === 'internal') lines.push('\ttls internal');
    lines.push(...reverseProxy(project, site.service, site.port, health(site.service, site.port)), '}');
    // Redirects are off server-wide (so apps on other ports get none they did not ask for); a site on :443 gets its own.
    if (port === '443') lines.push(`http://${site.domain} {`, ...(host ? [`\tbind ${bindAddress(host)}`] : []), '\tredir https://{host}{uri} permanent', '}');
  }
  return `${lines.join('\n')}\n`;
}

/** The proxy's main config: server-wide options, then every app's routes. */
export function proxyMainConfig(): string {
  return [
    '# aidd-proxy: written by aidd-devops. Each app deployed on this server has its routes in apps/.',
    '{',
    `\tadmin unix/${PROXY_ADMIN_SOCKET}`,
    '\t# Each slot without a container fails its health check every second: not worth a log line.',
    '\tlog default {',
    '\t\texclude http.handlers.reverse_proxy.health_checker.active',
    '\t}',
    '\tauto_https disable_redirects',
    '\t# In-flight requests get this long to finish when a reload replaces a route.',
    '\tgrace_period 30s',
    '}',
    `import ${PROXY_CONFIG_DIR}/apps/*.caddy`,
    '',
  ].join('\n');
}
