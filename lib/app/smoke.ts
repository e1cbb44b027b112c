// Smoke checks for a running stack: every service's container health, plus the HTTP checks the
// target declares under `smoke:` in aidd.yml. The same checks run locally, on a server (through forwarded
// ports) or against public URLs; only the way to reach a service changes.
import { setTimeout as sleep } from 'node:timers/promises';
import { UsageError } from '../core/cli.ts';
import type { ContainerStatus } from './compose.ts';

export interface HttpCheckSpec {
  name: string;
  service: string;
  /** Container port the service listens on; the published or forwarded port is looked up. */
  port: number;
  path: string;
  expect?: {
    status?: number;
    /** Fields the JSON body must hold with exactly these values. */
    json?: Record<string, unknown>;
    /** Fields the JSON body must have, any value. */
    'json-keys'?: string[];
    /** Text the body must contain. */
    contains?: string;
    /** A JSON field shown in the report, e.g. the migration revision. */
    report?: string;
  };
}

export interface CheckOutcome {
  name: string;
  ok: boolean;
  attempts: number;
  ms: number;
  detail: string;
}

/** How a check reaches the stack. */
export interface StackAccess {
  /** Base URL (http://host:port) for a service's container port. */
  baseUrl(service: string, port: number): Promise<string>;
  containers(): Promise<ContainerStatus[]>;
  /**
   * Runs the service's own healthcheck in a container now; undefined where that is not possible. A
   * container docker still calls "starting" counts as healthy once it passes: docker only runs the
   * check again at its next interval, seconds later.
   */
  healthcheckPasses?(status: ContainerStatus): Promise<boolean | undefined>;
}

/** Returns a failure reason, or undefined when the response meets the expectations. */
export function judgeResponse(spec: HttpCheckSpec, status: number, body: string): { problem?: string; report?: string } {
  const expect = spec.expect ?? {};
  const wantStatus = expect.status ?? 200;
  if (status !== wantStatus) return { problem: `HTTP ${status}, expected ${wantStatus}` };
  if (expect.contains !== undefined && !body.includes(expect.contains)) return { problem: `body lacks "${expect.contains}"` };
  if (expect.json || expect['json-keys'] || expect.report) {
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(body) as Record<string, unknown>;
    } catch {
      return { problem: 'body is not JSON' };
    }
    for (const [key, value] of Object.entries(expect.json ?? {})) {
      if (doc[key] !== value) return { problem: `${key} is ${JSON.stringify(doc[key])}, expected ${JSON.stringify(value)}` };
    }
    for (const key of expect['json-keys'] ?? []) {
      if (!(key in doc)) return { problem: `JSON lacks ${key}` };
    }
    if (expect.report) return { report: `${expect.report} ${String(doc[expect.report])}` };
  }
  return {};
}

type Probe = () => Promise<{ problem?: string; detail: string }>;

function httpProbe(spec: HttpCheckSpec, access: StackAccess, requestTimeoutMs: number): Probe {
  return async () => {
    const url = `${await access.baseUrl(spec.service, spec.port)}${spec.path}`;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(requestTimeoutMs), redirect: 'manual' });
      const verdict = judgeResponse(spec, response.status, await response.text());
      return { problem: verdict.problem, detail: verdict.problem ?? verdict.report ?? `HTTP ${response.status}` };
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
      return { problem: `${url}: ${cause}`, detail: `${url}: ${cause}` };
    }
  };
}

function containerProbe(service: string, access: StackAccess): Probe {
  return async () => {
    const mine = (await access.containers()).filter((status) => status.service === service);
    if (mine.length === 0) return { problem: 'no container', detail: 'no container' };
    let checkedNow = false;
    for (const status of mine) {
      if (status.state === 'running' && ['healthy', 'none'].includes(status.health)) continue;
      if (status.state === 'running' && status.health === 'starting' && (await access.healthcheckPasses?.(status))) {
        checkedNow = true;
        continue;
      }
      return { problem: `${status.state}, ${status.health}`, detail: `${status.state}, ${status.health}` };
    }
    return { detail: checkedNow ? 'running, healthcheck passed' : mine[0]!.health === 'none' ? 'running' : 'running, healthy' };
  };
}

export interface SmokeOptions {
  /** Services whose containers must be running and healthy. Empty when checking by URL only. */
  services: string[];
  http: HttpCheckSpec[];
  deadlineMs: number;
  requestTimeoutMs?: number;
}

/** Runs every check, retrying failures with backoff until the deadline; never loops unbounded. */
export async function runSmoke(access: StackAccess, options: SmokeOptions): Promise<CheckOutcome[]> {
  const requestTimeoutMs = options.requestTimeoutMs ?? 5000;
  const probes: [string, Probe][] = [
    ...options.services.map((service): [string, Probe] => [`${service} container`, containerProbe(service, access)]),
    ...options.http.map((spec): [string, Probe] => [spec.name, httpProbe(spec, access, requestTimeoutMs)]),
  ];
  const deadline = Date.now() + options.deadlineMs;
  return Promise.all(
    probes.map(async ([name, probe]) => {
      const started = Date.now();
      let attempts = 0;
      let delay = 250;
      for (;;) {
        attempts += 1;
        let outcome: { problem?: string; detail: string };
        try {
          outcome = await probe();
        } catch (error) {
          outcome = { problem: (error as Error).message, detail: (error as Error).message };
        }
        if (!outcome.problem || Date.now() + delay > deadline) {
          return { name, ok: !outcome.problem, attempts, ms: Date.now() - started, detail: outcome.detail };
        }
        await sleep(delay);
        // Capped low: a probe costs milliseconds, and every second waited after health is deploy time.
        delay = Math.min(delay * 2, 1000);
      }
    }),
  );
}

export function formatOutcomes(outcomes: CheckOutcome[]): string {
  const width = Math.max(...outcomes.map((outcome) => outcome.name.length));
  return outcomes
    .map((outcome) => `${outcome.ok ? 'ok  ' : 'FAIL'}  ${outcome.name.padEnd(width)}  ${String(outcome.ms).padStart(6)} ms  ${outcome.detail}`)
    .join('\n');
}

/** --url SERVICE=URL flags: check a service at a public base URL. */
export function parseServiceUrls(values: string[]): Map<string, string> {
  const urls = new Map<string, string>();
  for (const value of values) {
    const match = /^([\w.-]+)=(https?:\/\/.+)$/.exec(value);
    if (!match) throw new UsageError(`--url ${value} is not SERVICE=http(s)://host[:port]; e.g. --url api=https://api.example.com`);
    urls.set(match[1]!, match[2]!.replace(/\/+$/, ''));
  }
  return urls;
}
