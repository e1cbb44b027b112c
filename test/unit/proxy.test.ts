// The reverse proxy's pure half: which published ports it serves (read from the compose file and
// aidd.yml), the slot ports containers publish on instead, and the Caddy config that joins the two.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { REPO_ROOT } from '../../lib/app/target.ts';
import { UsageError } from '../../lib/core/cli.ts';
import {
  appProxyConfig,
  listenVariables,
  nextSlot,
  parsePortEntry,
  PROXY_ADMIN_SOCKET,
  proxyMainConfig,
  proxyRoutes,
  slotPort,
  slotPortLists,
} from '../../lib/deploy/proxy.ts';

const AIDD_REGISTRY_COMPOSE = path.join(REPO_ROOT, 'examples', 'aidd-bot', 'docker-compose.registry.yml');
const HELLO_COMPOSE = path.join(REPO_ROOT, 'examples', 'hello-compose', 'docker-compose.yml');

const aidd = await loadComposeApp(AIDD_REGISTRY_COMPOSE, { vars: {} });
const hello = await loadComposeApp(HELLO_COMPOSE, { vars: {} });

/** An app from a compose file and an aidd.yml written into a temporary directory. */
async function appWith(compose: string, aiddYml: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-proxy-'));
  writeFileSync(path.join(dir, 'docker-compose.yml'), compose);
  writeFileSync(path.join(dir, 'aidd.yml'), aiddYml);
  return loadComposeApp(path.join(dir, 'docker-compose.yml'), { vars: {} });
}

// Every kind of ports: entry; aidd.yml names web 8080, api 8000 and dns 53 as HTTP, so only the entries
// that publish one of them on one fixed TCP port are the proxy's. The routed web publishes nothing else
// on a fixed port: two of its containers run side by side during a switch.
const MIXED_PORTS = `services:
  web:
    image: web
    ports:
      - "127.0.0.1::8080"
      - "8081"
      - target: 8080
        published: 9090
        host_ip: 127.0.0.1
  api:
    image: api
    ports:
      - "8000-8001:8000-8001"
  dns:
    image: dns
    ports:
      - "53:53/udp"
  db:
    image: db
    ports:
      - "5432:5432"
`;
const MIXED_HTTP = 'proxy: {http: [{service: web, port: 8080}, {service: api, port: 8000}, {service: dns, port: 53}]}\n';

describe('parsePortEntry', () => {
  it.each([
    ['short syntax with an address', '127.0.0.1:8000:8000', { host: '127.0.0.1', published: '8000', target: '8000', protocol: 'tcp' }],
    ['short syntax without an address', '18000:8000', { host: '', published: '18000', target: '8000', protocol: 'tcp' }],
    ['an IPv6 address in brackets', '[::1]:8080:80', { host: '::1', published: '8080', target: '80', protocol: 'tcp' }],
    ['a protocol', '53:53/udp', { host: '', published: '53', target: '53', protocol: 'udp' }],
    ['the container port alone', '80', { host: '', published: '', target: '80', protocol: 'tcp' }],
    ['the container port as a number', 80, { host: '', published: '', target: '80', protocol: 'tcp' }],
    ['a random host port on an address', '127.0.0.1::80', { host: '127.0.0.1', published: '', target: '80', protocol: 'tcp' }],
    ['long syntax', { target: 80, published: 8080, host_ip: '127.0.0.1' }, { host: '127.0.0.1', published: '8080', target: '80', protocol: 'tcp' }],
    ['long syntax with a protocol', { target: 53, published: '53', protocol: 'udp' }, { host: '', published: '53', target: '53', protocol: 'udp' }],
  ])('reads %s', (_, entry, parsed) => {
    expect(parsePortEntry(entry)).toEqual(parsed);
  });

  it('keeps a range as text, so no route takes it for one port', () => {
    expect(parsePortEntry('8000-8001:8000-8001')).toEqual({ host: '', published: '8000-8001', target: '8000-8001', protocol: 'tcp' });
  });

  it('reads nothing from an entry compose would refuse', () => {
    expect(parsePortEntry('1:2:3:4')).toBeUndefined();
    expect(parsePortEntry(null)).toBeUndefined();
    expect(parsePortEntry(['8000:8000'])).toBeUndefined();
  });
});

describe('proxyRoutes', () => {
  it("routes AIDD Bot's api and frontend where the server's .env publishes them, and leaves the bot and postgres alone", () => {
    expect(proxyRoutes(aidd, { API_PORT: '18000', BIND_ADDRESS: '127.0.0.1' })).toEqual([
      { service: 'api', port: 8000, entry: 0, listen: { host: '127.0.0.1', port: 18000 } },
      { service: 'frontend', port: 3000, entry: 0, listen: { host: '127.0.0.1', port: 3000 } },
    ]);
  });

  it("takes the compose file's defaults for variables the .env does not set", () => {
    expect(proxyRoutes(aidd, {}).map((route) => route.listen)).toEqual([
      { host: '127.0.0.1', port: 8000 },
      { host: '127.0.0.1', port: 3000 },
    ]);
  });

  it('listens on every address where the compose file publishes on 0.0.0.0', () => {
    expect(proxyRoutes(aidd, { BIND_ADDRESS: '0.0.0.0' }).map((route) => route.listen.host)).toEqual(['', '']);
  });

  it("routes Hello Compose's web port, which the smoke checks name, and not the worker, which publishes none", () => {
    expect(proxyRoutes(hello, {})).toEqual([{ service: 'web', port: 8080, entry: 0, listen: { host: '127.0.0.1', port: 8480 } }]);
  });

  it('routes only entries publishing an HTTP port on one fixed TCP port: not a range, UDP, a random host port or a port aidd.yml does not name', async () => {
    const app = await appWith(MIXED_PORTS, MIXED_HTTP);
    expect(proxyRoutes(app, {})).toEqual([{ service: 'web', port: 8080, entry: 2, listen: { host: '127.0.0.1', port: 9090 } }]);
  });

  it('refuses a routed service that publishes another fixed port, naming the entry: its two containers could not both take it', async () => {
    const app = await appWith('services:\n  web:\n    image: web\n    ports: ["8080:80", "127.0.0.1:${METRICS_PORT:-9100}:9100"]\n', 'proxy: {http: [{service: web, port: 80}]}\n');
    expect(() => proxyRoutes(app, {})).toThrow(UsageError);
    expect(() => proxyRoutes(app, {})).toThrow(`${app.file}: services.web.ports[1]: a service the proxy routes to runs two containers during a switch, so it cannot publish another fixed port`);
  });

  it('routes nothing with proxy.enabled: false, and so refuses neither container_name nor another fixed port', async () => {
    const app = await appWith('services:\n  web:\n    image: web\n    container_name: shop\n    ports: ["8080:80", "9100:9100"]\n', 'proxy: {enabled: false, http: [{service: web, port: 80}]}\n');
    expect(proxyRoutes(app, {})).toEqual([]);
  });

  it('refuses a routed service with container_name, naming the key: a switch runs two of its containers', async () => {
    const app = await appWith('services:\n  web:\n    image: web\n    container_name: shop\n    ports: ["8080:80"]\n', 'proxy: {http: [{service: web, port: 80}]}\n');
    expect(() => proxyRoutes(app, {})).toThrow(UsageError);
    expect(() => proxyRoutes(app, {})).toThrow(`${app.file}: services.web.container_name: a routed service runs two containers during a switch`);
  });

  it('accepts container_name on a service nothing routes to', async () => {
    const app = await appWith('services:\n  web:\n    image: web\n    ports: ["8080:80"]\n  db:\n    image: db\n    container_name: shop-db\n', 'proxy: {http: [{service: web, port: 80}]}\n');
    expect(proxyRoutes(app, {}).map((route) => route.service)).toEqual(['web']);
  });
});

describe('listenVariables', () => {
  it("are the variables AIDD Bot's ports use, which the deploy reads from the server's .env", () => {
    expect(listenVariables(aidd).sort()).toEqual(['API_PORT', 'BIND_ADDRESS', 'FRONTEND_PORT']);
  });

  it('are none where the ports are written out', () => {
    expect(listenVariables(hello)).toEqual([]);
  });
});

describe('slots', () => {
  it('gives each service port two loopback ports below the ephemeral range, the same on every deploy', () => {
    const zero = slotPort('aidd-bot', 'api', 8000, 0);
    const one = slotPort('aidd-bot', 'api', 8000, 1);
    expect(slotPort('aidd-bot', 'api', 8000, 0)).toBe(zero);
    expect(one).not.toBe(zero);
    for (const port of [zero, one]) {
      expect(port).toBeGreaterThanOrEqual(20_000);
      expect(port).toBeLessThanOrEqual(32_767);
    }
    // Another service, port or project gets other ports (these names happen not to collide).
    expect(slotPort('aidd-bot', 'frontend', 3000, 0)).not.toBe(zero);
    expect(slotPort('aidd-bot', 'api', 8001, 0)).not.toBe(zero);
    expect(slotPort('shop', 'api', 8000, 0)).not.toBe(zero);
  });

  it('a new service starts in slot 0; a kept one stays in its slot; a replaced one takes the other', () => {
    expect(nextSlot(undefined, true)).toBe(0);
    expect(nextSlot(undefined, false)).toBe(0);
    expect(nextSlot(0, false)).toBe(0);
    expect(nextSlot(1, false)).toBe(1);
    expect(nextSlot(0, true)).toBe(1);
    expect(nextSlot(1, true)).toBe(0);
  });

  it("publishes each routed entry on its slot port, on loopback only, and leaves the service's other entries as written", async () => {
    const app = await appWith(MIXED_PORTS, MIXED_HTTP);
    const lists = slotPortLists(app, proxyRoutes(app, {}), 'shop', { web: 1 });
    expect(lists).toEqual({ web: ['127.0.0.1::8080', '8081', `127.0.0.1:${slotPort('shop', 'web', 8080, 1)}:8080`] });
  });

  it('publishes a port an HTTPS site serves even where the compose file does not', async () => {
    const app = await appWith('services:\n  web:\n    image: web\n', 'proxy: {sites: [{domain: shop.example.com, service: web, port: 80}]}\n');
    expect(slotPortLists(app, proxyRoutes(app, {}), 'shop', {})).toEqual({ web: [`127.0.0.1:${slotPort('shop', 'web', 80, 0)}:80`] });
  });
});

describe('appProxyConfig', () => {
  /** The reverse_proxy block of a service port: both slots, the first healthy one serving. */
  const reverseProxy = (project: string, service: string, port: number, health: string) => [
    `\treverse_proxy 127.0.0.1:${slotPort(project, service, port, 0)} 127.0.0.1:${slotPort(project, service, port, 1)} {`,
    '\t\tlb_policy first',
    `\t\thealth_uri ${health}`,
    '\t\thealth_interval 1000ms',
    '\t\thealth_timeout 3s',
    '\t\tlb_try_duration 10s',
    '\t\tlb_try_interval 50ms',
    '\t}',
  ];

  it('serves each route where the compose file published it, from both slots, checking the smoke-checked health path', () => {
    expect(appProxyConfig(hello, 'hello', proxyRoutes(hello, {}))).toBe(
      ['# hello: written by aidd-devops on each deploy; edits are overwritten.', 'http://:8480 {', '\tbind 127.0.0.1', ...reverseProxy('hello', 'web', 8080, '/health.json'), '}', ''].join('\n'),
    );
  });

  it('serves an HTTPS site on its own address with the internal CA and no redirect, and one on :443 with a redirect from http://', async () => {
    const app = await appWith(
      'services:\n  web:\n    image: web\n',
      `proxy:
  http: [{service: web, port: 8080, health: /ready}]
  sites:
    - {domain: hello.internal, service: web, port: 8080, tls: internal, listen: "127.0.0.1:8443"}
    - {domain: hello.example.com, service: web, port: 8080}
`,
    );
    const config = appProxyConfig(app, 'hello', proxyRoutes(app, {}));
    const upstream = reverseProxy('hello', 'web', 8080, '/ready');
    expect(config).toBe(
      [
        '# hello: written by aidd-devops on each deploy; edits are overwritten.',
        'https://hello.internal:8443 {',
        '\tbind 127.0.0.1',
        '\ttls internal',
        ...upstream,
        '}',
        'https://hello.example.com {',
        ...upstream,
        '}',
        'http://hello.example.com {',
        '\tredir https://{host}{uri} permanent',
        '}',
        '',
      ].join('\n'),
    );
    expect(config).not.toContain('http://hello.internal');
  });

  it('binds an IPv6 site address without its brackets, on the site and its redirect', async () => {
    const app = await appWith('services:\n  web:\n    image: web\n', 'proxy: {sites: [{domain: hello.example.com, service: web, port: 8080, listen: "[::1]:443"}]}\n');
    const config = appProxyConfig(app, 'hello', []);
    expect(config.match(/^\tbind .*$/gm)).toEqual(['\tbind ::1', '\tbind ::1']);
    expect(config).toContain('https://hello.example.com {\n');
    expect(config).toContain('\t\thealth_uri /\n');
  });

  it('serves no site with proxy.enabled: false', async () => {
    const app = await appWith('services:\n  web:\n    image: web\n', 'proxy: {enabled: false, sites: [{domain: hello.example.com, service: web, port: 8080}]}\n');
    expect(appProxyConfig(app, 'hello', [])).toBe('# hello: written by aidd-devops on each deploy; edits are overwritten.\n');
  });
});

describe('proxyMainConfig', () => {
  it("keeps the admin API off the network, turns off server-wide redirects and imports every app's routes", () => {
    const config = proxyMainConfig();
    expect(config).toContain(`\tadmin unix/${PROXY_ADMIN_SOCKET}\n`);
    expect(config).toContain('\tauto_https disable_redirects\n');
    expect(config).toContain('\tgrace_period 30s\n');
    // Slots without a container fail their health checks all the time; those lines would drown the log.
    expect(config).toContain('\t\texclude http.handlers.reverse_proxy.health_checker.active\n');
    expect(config.endsWith('import /etc/caddy/apps/*.caddy\n')).toBe(true);
  });
});
