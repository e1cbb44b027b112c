import { describe, expect, it } from 'vitest';
import { formatStatus, formatUptime } from '../../lib/deploy/status-view.ts';

const now = Date.parse('2026-11-28T12:00:00Z');

describe('formatUptime', () => {
  it('says how long a container has run, shortly', () => {
    const cases: [string | undefined, string][] = [
      ['2026-11-28T11:59:15Z', '45s'],
      ['2026-11-28T11:48:00Z', '12m'],
      ['2026-11-28T08:55:00Z', '3h05m'],
      ['2026-11-26T08:00:00Z', '2d04h'],
      [undefined, '-'],
      ['0001-01-01T00:00:00Z', '-'],
      ['not a date', '-'],
    ];
    for (const [startedAt, expected] of cases) expect(formatUptime(startedAt, now), String(startedAt)).toBe(expected);
  });
});

describe('formatStatus', () => {
  it('shows each service with state, health, uptime, restarts and image, then the proxy, lock, steps and backups', () => {
    const text = formatStatus(
      {
        current: 'r2',
        services: [
          { id: 'a', service: 'api', state: 'running', health: 'healthy', image: 'reg/me/api@sha256:aa', startedAt: '2026-11-28T11:48:00Z', restarts: 0 },
          { id: 'b', service: 'bot', state: 'restarting', health: 'none', image: 'reg/me/bot@sha256:bb', startedAt: '2026-11-28T11:59:58Z', restarts: 7 },
        ],
        lock: { who: 'ci (GitHub Actions)', at: '2026-11-28T11:59:00Z' },
        runningSteps: ['r3/migrate'],
        backups: ['r2-before.sql.gz'],
        proxy: 'running',
      },
      'aidd-proxy',
      now,
    );
    expect(text).toBe(
      [
        'current release: r2',
        '  SERVICE  STATE       HEALTH   UP   RESTARTS  IMAGE',
        '  api      running     healthy  12m  0         reg/me/api@sha256:aa',
        '  bot      restarting  none     -    7         reg/me/bot@sha256:bb',
        'reverse proxy (aidd-proxy): running',
        'lock held by ci (GitHub Actions) since 2026-11-28T11:59:00Z',
        'still running on the server: r3/migrate',
        'backups: r2-before.sql.gz',
        '',
      ].join('\n'),
    );
  });

  it('says when nothing is deployed', () => {
    expect(formatStatus({ services: [], runningSteps: [], backups: [], proxy: 'absent' }, 'aidd-proxy', now)).toBe('current release: none\nreverse proxy (aidd-proxy): absent\n');
  });

  it('says the reverse proxy is absent when the report has no proxy state', () => {
    const text = formatStatus(
      { current: 'r1', services: [{ id: 'a', service: 'web', state: 'running', health: 'none', startedAt: '2026-11-28T11:59:15Z' }], runningSteps: [], backups: [] },
      'aidd-proxy',
      now,
    );
    expect(text).toBe(['current release: r1', '  SERVICE  STATE    HEALTH  UP   RESTARTS  IMAGE', '  web      running  none    45s  -         -', 'reverse proxy (aidd-proxy): absent', ''].join('\n'));
  });
});

describe('formatStatus on a swarm', () => {
  const web = { service: 'web', running: 2, desired: 2, image: '127.0.0.1:5000/o/hello-web@sha256:aa', nodes: ['aidd-sw1-2', 'aidd-sw1-3'] };
  const worker = { service: 'worker', running: 0, desired: 1, image: '127.0.0.1:5000/o/hello-worker@sha256:bb', nodes: [] };

  it("shows each service's replicas, the nodes its tasks run on and its image, without a reverse proxy line", () => {
    const text = formatStatus(
      {
        current: 'r3',
        services: [
          { id: 'shop_web.1', service: 'web', state: 'running', health: 'none' },
          { id: 'shop_web.2', service: 'web', state: 'running', health: 'none' },
          { id: 'shop_worker.1', service: 'worker', state: 'starting', health: 'none' },
        ],
        swarm: [web, worker],
        lock: { who: 'ci (GitHub Actions)', at: '2026-11-28T11:59:00Z' },
        runningSteps: [],
        backups: [],
        // Not on a swarm; were it set, the swarm table still decides the form.
        proxy: 'running',
      },
      'aidd-proxy',
      now,
    );
    expect(text).toBe(
      [
        'current release: r3',
        '  SERVICE  REPLICAS  NODES                  IMAGE',
        '  web      2/2       aidd-sw1-2,aidd-sw1-3  127.0.0.1:5000/o/hello-web@sha256:aa',
        '  worker   0/1       -                      127.0.0.1:5000/o/hello-worker@sha256:bb',
        'lock held by ci (GitHub Actions) since 2026-11-28T11:59:00Z',
        '',
      ].join('\n'),
    );
    expect(text).not.toContain('reverse proxy');
    expect(text).not.toContain('STATE');
  });

  it('shows only the release of a stack with no services', () => {
    expect(formatStatus({ services: [], swarm: [], runningSteps: [], backups: [] }, 'aidd-proxy', now)).toBe('current release: none\n');
  });
});
