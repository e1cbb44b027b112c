import { describe, expect, it } from 'vitest';
import { judgeResponse, parseServiceUrls, runSmoke, type HttpCheckSpec } from '../../lib/app/smoke.ts';

const health: HttpCheckSpec = {
  name: 'api health',
  service: 'api',
  port: 8000,
  path: '/health',
  expect: { json: { status: 'ok' }, 'json-keys': ['migration'], report: 'migration' },
};

describe('judgeResponse', () => {
  it('accepts a matching response and reports the chosen field', () => {
    expect(judgeResponse(health, 200, '{"status":"ok","migration":"0002"}')).toEqual({ report: 'migration 0002' });
  });

  it('names what is wrong', () => {
    expect(judgeResponse(health, 503, '{}').problem).toBe('HTTP 503, expected 200');
    expect(judgeResponse(health, 200, 'nope').problem).toBe('body is not JSON');
    expect(judgeResponse(health, 200, '{"status":"error"}').problem).toBe('status is "error", expected "ok"');
    expect(judgeResponse(health, 200, '{"status":"ok"}').problem).toBe('JSON lacks migration');
    const page: HttpCheckSpec = { name: 'page', service: 'frontend', port: 3000, path: '/', expect: { contains: 'AIDD Bot' } };
    expect(judgeResponse(page, 200, '<h1>Other</h1>').problem).toBe('body lacks "AIDD Bot"');
  });
});

describe('runSmoke', () => {
  it('retries a failing check with backoff and gives up at the deadline', async () => {
    let calls = 0;
    const started = Date.now();
    const outcomes = await runSmoke(
      {
        baseUrl: async () => 'http://127.0.0.1:9',
        containers: async () => {
          calls += 1;
          return [{ id: 'c1', service: 'db', state: 'running', health: calls >= 3 ? 'healthy' : 'starting' }];
        },
      },
      { services: ['db', 'missing'], http: [], deadlineMs: 1500 },
    );
    expect(outcomes.find((outcome) => outcome.name === 'db container')).toMatchObject({ ok: true, detail: 'running, healthy' });
    expect(outcomes.find((outcome) => outcome.name === 'missing container')).toMatchObject({ ok: false, detail: 'no container' });
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('counts a container docker still calls starting as healthy once its own healthcheck passes when run now', async () => {
    const ran: string[] = [];
    const outcomes = await runSmoke(
      {
        baseUrl: async () => 'http://127.0.0.1:9',
        containers: async () => [
          { id: 'ready', service: 'api', state: 'running', health: 'starting' },
          { id: 'booting', service: 'bot', state: 'running', health: 'starting' },
        ],
        healthcheckPasses: async (status) => {
          ran.push(status.id);
          return status.id === 'ready';
        },
      },
      { services: ['api', 'bot'], http: [], deadlineMs: 300 },
    );
    expect(outcomes.find((outcome) => outcome.name === 'api container')).toMatchObject({ ok: true, detail: 'running, healthcheck passed', attempts: 1 });
    expect(outcomes.find((outcome) => outcome.name === 'bot container')).toMatchObject({ ok: false, detail: 'running, starting' });
    expect(ran).toContain('booting');
  });
});

describe('parseServiceUrls', () => {
  it('maps services to base URLs and rejects anything else with the expected shape', () => {
    expect([...parseServiceUrls(['api=https://api.example.com/'])]).toEqual([['api', 'https://api.example.com']]);
    expect(() => parseServiceUrls(['api'])).toThrow('--url api is not SERVICE=http(s)://host[:port]');
  });
});
