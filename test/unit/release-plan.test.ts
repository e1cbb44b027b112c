// What a release is, decided from the images just pulled and the live release's record: which image
// each service keeps, which slot each routed service's container takes, the release compose file and
// the proxy's routes. Planned on AIDD Bot's registry compose file, the one servers run.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ComposeApp } from '../../lib/app/compose.ts';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { REPO_ROOT } from '../../lib/app/target.ts';
import { contentKeys } from '../../lib/deploy/engine.ts';
import { slotPort } from '../../lib/deploy/proxy.ts';
import { planRelease, sha256, startOrder, type ReleasePlan, type ReleasePlanInput, type ReleaseRecord } from '../../lib/deploy/release-plan.ts';

const aidd = await loadComposeApp(path.join(REPO_ROOT, 'examples', 'aidd-bot', 'docker-compose.registry.yml'), { vars: {} });
const PROJECT = 'aidd-bot';
/** The server's .env: the api reads POSTGRES_PASSWORD; the frontend reads none of these but its ports. */
const ENV = { API_PORT: '18000', BIND_ADDRESS: '127.0.0.1', POSTGRES_PASSWORD: 'first', IMAGE_OWNER: 'me' };

/** Refs pinned by digest, as a pull of one build prints them: every build has new digests (its revision label). */
function pulledFrom(build: string): Record<string, string> {
  return Object.fromEntries(['api', 'bot', 'frontend'].map((service) => [service, `ghcr.io/me/aidd-${service}@sha256:${sha256(`${build}/${service}`)}`]));
}

const CONTENTS = { api: 'content-api-1', bot: 'content-bot-1', frontend: 'content-frontend-1' };

/** A deploy that uploads nothing but the images: the live .env carries over, and only its listen variables are read. */
function plan(input: Partial<ReleasePlanInput>): ReleasePlan {
  return planRelease({ app: aidd, project: PROJECT, id: 'r', pulled: pulledFrom('b1'), contents: CONTENTS, vars: { API_PORT: '18000', BIND_ADDRESS: '127.0.0.1' }, envUploaded: false, envChanged: false, ...input });
}

/** What release.json holds after a deploy with `planned`: what the next deploy reads as the live record. */
function recordOf(planned: ReleasePlan, id: string): ReleaseRecord {
  return JSON.parse(JSON.stringify({ id, revision: id, ...planned.record, previous: null })) as ReleaseRecord;
}

/** The release compose file's services, as the server's compose reads them. */
function servicesOf(planned: ReleasePlan): Record<string, { image?: string; ports?: string[] }> {
  return (parse(planned.compose) as { services: Record<string, { image?: string; ports?: string[] }> }).services;
}

const slotOf = (service: string, port: number, slot: 0 | 1) => slotPort(PROJECT, service, port, slot);

describe('planRelease', () => {
  const first = plan({ id: 'r1', vars: ENV, envUploaded: true, envChanged: true });
  const live = recordOf(first, 'r1');

  it('first deploy: routed services start in slot 0, and the record holds what the next deploy compares with', () => {
    expect(first.kept).toEqual([]);
    expect(first.images).toEqual(pulledFrom('b1'));
    expect(first.routed).toEqual([
      { service: 'api', port: 8000, hostPort: slotOf('api', 8000, 0) },
      { service: 'frontend', port: 3000, hostPort: slotOf('frontend', 3000, 0) },
    ]);
    expect(first.direct).toEqual(['postgres', 'bot']);
    expect(first.record).toMatchObject({
      images: pulledFrom('b1'),
      contents: CONTENTS,
      slots: { api: 0, frontend: 0 },
      routed: first.routed,
      listen: { 'api:8000': 18000, 'frontend:3000': 3000 },
      proxySha: sha256(first.proxyConfig!),
    });
    for (const hashes of [first.record.definitions!, first.record.variables!]) {
      expect(Object.keys(hashes)).toEqual(['postgres', 'api', 'bot', 'frontend']);
      for (const hash of Object.values(hashes)) expect(hash).toMatch(/^[0-9a-f]{64}$/);
    }
    // The values are in the record only as a hash: release.json never holds the .env's secrets.
    expect(JSON.stringify(first.record)).not.toContain(ENV.POSTGRES_PASSWORD);
  });

  it('first deploy: the release file publishes routed ports on loopback slot ports, and the proxy listens where the compose file published them', () => {
    const services = servicesOf(first);
    expect(services.api).toMatchObject({ image: pulledFrom('b1').api, ports: [`127.0.0.1:${slotOf('api', 8000, 0)}:8000`] });
    expect(services.frontend!.ports).toEqual([`127.0.0.1:${slotOf('frontend', 3000, 0)}:3000`]);
    expect(services.bot!.image).toBe(pulledFrom('b1').bot);
    expect(services.postgres).toMatchObject({ image: '${POSTGRES_IMAGE:-postgres:16-alpine}' });
    expect(services.postgres!.ports).toBeUndefined();
    expect(first.proxyConfig).toContain(`http://:18000 {\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:${slotOf('api', 8000, 0)} 127.0.0.1:${slotOf('api', 8000, 1)} {\n`);
    expect(first.proxyConfig).toContain(`http://:3000 {\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:${slotOf('frontend', 3000, 0)} 127.0.0.1:${slotOf('frontend', 3000, 1)} {\n`);
  });

  it("a redeploy where only the frontend's content changed keeps the api's and the bot's running images, and the api's slot", () => {
    const second = plan({ id: 'r2', pulled: pulledFrom('b2'), contents: { ...CONTENTS, frontend: 'content-frontend-2' }, live });
    expect(second.kept).toEqual(['api', 'bot']);
    // The database and the bot are as they were: the switch does not ask compose about them.
    expect(second.settled).toEqual(['postgres', 'bot']);
    expect(second.images).toEqual({ api: pulledFrom('b1').api, bot: pulledFrom('b1').bot, frontend: pulledFrom('b2').frontend });
    expect(second.record.slots).toEqual({ api: 0, frontend: 1 });
    expect(second.record.definitions!.api).toBe(first.record.definitions!.api);
    expect(second.record.definitions!.frontend).not.toBe(first.record.definitions!.frontend);
    // The .env carried over: so did the hashes of its values.
    expect(second.record.variables).toEqual(first.record.variables);
    expect(second.routed).toEqual([
      { service: 'api', port: 8000, hostPort: slotOf('api', 8000, 0) },
      { service: 'frontend', port: 3000, hostPort: slotOf('frontend', 3000, 1) },
    ]);
    expect(servicesOf(second).frontend!.ports).toEqual([`127.0.0.1:${slotOf('frontend', 3000, 1)}:3000`]);
    // The routes name both slots, so moving a service leaves them as they were: the proxy is not reloaded.
    expect(second.proxyConfig).toBe(first.proxyConfig);
    expect(second.record.proxySha).toBe(first.record.proxySha);
    // The deploy after it moves the frontend back: each change alternates between the two slots.
    const third = plan({ id: 'r3', pulled: pulledFrom('b3'), contents: { ...CONTENTS, frontend: 'content-frontend-3' }, live: recordOf(second, 'r2') });
    expect(third.record.slots).toEqual({ api: 0, frontend: 0 });
  });

  it('a rebuild of unchanged sources plans the live release again, so the deploy sees nothing to do', () => {
    const again = plan({ id: 'r2', pulled: pulledFrom('b2'), live });
    expect(again.kept).toEqual(['api', 'bot', 'frontend']);
    expect(again.compose).toBe(first.compose);
    expect(again.record.proxySha).toBe(first.record.proxySha);
    expect(again.record.slots).toEqual(first.record.slots);
  });

  it('the same .env uploaded again keeps every container as well', () => {
    const again = plan({ id: 'r2', pulled: pulledFrom('b2'), live, vars: { ...ENV }, envUploaded: true, envChanged: false });
    expect(again.compose).toBe(first.compose);
    expect(again.record.variables).toEqual(first.record.variables);
  });

  it('a new .env replaces a routed service whose variables it changes, into its other slot, and keeps the one it does not touch', () => {
    const changed = plan({ id: 'r2', pulled: pulledFrom('b2'), live, vars: { ...ENV, POSTGRES_PASSWORD: 'second' }, envUploaded: true, envChanged: true });
    // Same images: only the api's container changes, because compose would recreate it for its new password.
    expect(changed.kept).toEqual(['api', 'bot', 'frontend']);
    // The database and the bot read the password too: compose converges them.
    expect(changed.settled).toEqual([]);
    expect(changed.record.slots).toEqual({ api: 1, frontend: 0 });
    expect(changed.routed.map((route) => route.hostPort)).toEqual([slotOf('api', 8000, 1), slotOf('frontend', 3000, 0)]);
    expect(changed.record.variables!.api).not.toBe(first.record.variables!.api);
    expect(changed.record.variables!.frontend).toBe(first.record.variables!.frontend);
  });

  it('a new .env that changes only what the release file no longer reads keeps the containers: a pinned image tag, a listen port', () => {
    const moved = plan({ id: 'r2', pulled: pulledFrom('b2'), live, vars: { ...ENV, IMAGE_TAG: 'v9', API_PORT: '18001' }, envUploaded: true, envChanged: true });
    expect(moved.record.slots).toEqual({ api: 0, frontend: 0 });
    expect(moved.record.variables).toEqual(first.record.variables);
    // The proxy listens on the new port: its routes change, and with them the release.
    expect(moved.proxyConfig).toContain('http://:18001 {');
    expect(moved.record.proxySha).not.toBe(first.record.proxySha);
    expect(moved.record.listen).toEqual({ 'api:8000': 18001, 'frontend:3000': 3000 });
  });

  it('a .env carried over keeps routed containers even where the live record has no hashes of its values', () => {
    // A release deployed before the proxy, or one whose .env was never uploaded, records no variables.
    const { variables: _variables, ...unhashed } = live;
    const carried = plan({ id: 'r2', pulled: pulledFrom('b2'), live: unhashed });
    expect(carried.record.slots).toEqual({ api: 0, frontend: 0 });
    expect(carried.compose).toBe(first.compose);
    const again = plan({ id: 'r3', pulled: pulledFrom('b3'), live: recordOf(carried, 'r2') });
    expect(again.record.slots).toEqual({ api: 0, frontend: 0 });
  });

  it('a new .env replaces a routed service that reads env_file files, whatever its compose variables', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-plan-'));
    writeFileSync(path.join(dir, 'docker-compose.yml'), 'services:\n  web:\n    image: reg/me/web:v1\n    env_file: [app.env]\n    ports: ["8080:80"]\n');
    writeFileSync(path.join(dir, 'app.env'), 'GREETING=hi\n');
    writeFileSync(path.join(dir, 'aidd.yml'), 'proxy: {http: [{service: web, port: 80}]}\n');
    const app = await loadComposeApp(path.join(dir, 'docker-compose.yml'), { vars: {} });
    const input = { app, project: 'shop', id: 'r1', pulled: { web: 'reg/me/web@sha256:aa' }, contents: { web: 'content-web' }, vars: { GREETING: 'hi' }, envUploaded: true, envChanged: true };
    const shopFirst = planRelease(input);
    const shopLive = recordOf(shopFirst, 'r1');
    expect(planRelease({ ...input, id: 'r2', live: shopLive, envChanged: false }).record.slots).toEqual({ web: 0 });
    expect(planRelease({ ...input, id: 'r2', live: shopLive, envChanged: true }).record.slots).toEqual({ web: 1 });
  });

  it('a routed service whose definition changed (not its image) moves to its other slot', () => {
    const edited = plan({ id: 'r2', live: { ...live, definitions: { ...live.definitions, api: sha256('an older definition') } } });
    expect(edited.kept).toEqual(['api', 'bot', 'frontend']);
    expect(edited.record.slots).toEqual({ api: 1, frontend: 0 });
  });

  it("records the routes' checksum, which changes with the proxy's settings even where the compose file does not", () => {
    const http = aidd.config.proxy.http.map((route) => (route.service === 'api' ? { ...route, health: '/ready' } : route));
    const checked = { ...aidd, config: { ...aidd.config, proxy: { ...aidd.config.proxy, http } } } as ComposeApp;
    const again = plan({ app: checked, id: 'r2', live });
    expect(again.compose).toBe(first.compose);
    expect(again.proxyConfig).toContain('\t\thealth_uri /ready\n');
    expect(again.record.proxySha).toBe(sha256(again.proxyConfig!));
    expect(again.record.proxySha).not.toBe(first.record.proxySha);
  });

  it('a live release deployed before the proxy (no slots in its record) puts routed services in slot 0', () => {
    const old = plan({ id: 'r2', live: { id: 'r1', images: pulledFrom('b0'), previous: null } });
    expect(old.kept).toEqual([]);
    expect(old.record.slots).toEqual({ api: 0, frontend: 0 });
  });

  it('records where the server reaches each route on its loopback: not a route bound to another address', () => {
    expect(plan({ vars: { BIND_ADDRESS: '0.0.0.0' } }).record.listen).toEqual({ 'api:8000': 8000, 'frontend:3000': 3000 });
    expect(plan({ vars: { BIND_ADDRESS: '10.0.0.5' } }).record.listen).toEqual({});
  });

  it('with proxy.enabled: false, publishes ports as the compose file says and writes no routes', () => {
    const direct = { ...aidd, config: { ...aidd.config, proxy: { ...aidd.config.proxy, enabled: false } } } as ComposeApp;
    const planned = plan({ app: direct, id: 'r1', vars: ENV, envUploaded: true, envChanged: true });
    expect(planned.proxyConfig).toBeUndefined();
    expect(planned.routed).toEqual([]);
    expect(planned.direct).toEqual(['postgres', 'api', 'bot', 'frontend']);
    expect(planned.record).toMatchObject({ slots: {}, definitions: {}, routed: [], listen: {}, proxySha: '' });
    expect(servicesOf(planned).api!.ports).toEqual(['${BIND_ADDRESS:-127.0.0.1}:${API_PORT:-8000}:8000']);
  });
});

describe('startOrder', () => {
  it("starts AIDD Bot's services after what they depend on: postgres, then the api, then the frontend", () => {
    const order = startOrder(aidd);
    expect([...order].sort()).toEqual(['api', 'bot', 'frontend', 'postgres']);
    const at = (service: string) => order.indexOf(service);
    expect(at('postgres')).toBeLessThan(at('api'));
    expect(at('api')).toBeLessThan(at('frontend'));
    expect(at('postgres')).toBeLessThan(at('bot'));
  });

  it('lists each service once even when depends_on goes round in a circle', () => {
    const circular = { services: [{ name: 'a', dependsOn: ['b'] }, { name: 'b', dependsOn: ['a'] }, { name: 'c', dependsOn: [] }] } as unknown as ComposeApp;
    expect(startOrder(circular)).toEqual(['b', 'a', 'c']);
  });
});

describe('contentKeys', () => {
  it("reads each service's content key from the pull's `content REF KEY` lines, by the ref it asked for", () => {
    const refs = { api: 'ghcr.io/me/aidd-api:v2', bot: 'ghcr.io/me/aidd-bot@sha256:bb', frontend: 'ghcr.io/me/aidd-frontend:v2' };
    const stdout = [
      'digest ghcr.io/me/aidd-api:v2 ghcr.io/me/aidd-api@sha256:aa',
      `content ghcr.io/me/aidd-api:v2 ${'1'.repeat(64)}`,
      'digest ghcr.io/me/aidd-bot@sha256:bb ghcr.io/me/aidd-bot@sha256:bb',
      `content ghcr.io/me/aidd-bot@sha256:bb ${'2'.repeat(64)}`,
      // A ref that is the start of another's is not mistaken for it.
      `content ghcr.io/me/aidd-frontend:v ${'3'.repeat(64)}`,
      '',
    ].join('\n');
    expect(contentKeys(stdout, refs)).toEqual({ api: '1'.repeat(64), bot: '2'.repeat(64) });
  });

  it('gives services sharing one ref the same key', () => {
    const ref = 'reg/me/app:v1';
    expect(contentKeys(`content ${ref} abc\n`, { web: ref, worker: ref })).toEqual({ web: 'abc', worker: 'abc' });
  });
});
