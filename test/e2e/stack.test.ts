// The D0 reference stack on a real Docker engine: build, up, health, data across restarts, teardown.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSmoke } from '../../lib/app/smoke.ts';
import { localAccess } from '../../lib/app/local-stack.ts';
import { scriptArgv } from '../../lib/app/target.ts';
import { artifactPath, launchChromium } from './browser.ts';
import { getJson, prepareReferenceStack, projectLeftovers, requireDocker, testRunner, type TestStack } from './harness.ts';

const runner = testRunner();
let stack: TestStack;

function sql(query: string) {
  return stack.compose(['exec', '-T', 'postgres', 'psql', '-U', 'aidd', '-d', 'aidd', '-tAc', query], { timeoutMs: 60_000 });
}

async function upAndHealthy(): Promise<void> {
  await runner.run(stack.compose(['up', '--detach', '--build']));
  const outcomes = await runSmoke(localAccess(runner, stack.target.projectName), {
    services: stack.app.services.map((service) => service.name),
    http: stack.app.config.smoke,
    deadlineMs: 180_000,
  });
  expect(outcomes.filter((outcome) => !outcome.ok)).toEqual([]);
}

describe('reference stack on a real Docker engine', () => {
  beforeAll(async () => {
    await requireDocker(runner);
    stack = await prepareReferenceStack(runner);
  });

  afterAll(async () => {
    if (!stack) return;
    await runner.attempt(stack.compose(['down', '--volumes', '--remove-orphans']));
  });

  it('builds all four services and brings them up healthy', async () => {
    await upAndHealthy();
    const status = await localAccess(runner, stack.target.projectName).containers();
    expect(status.map((item) => item.service).sort()).toEqual(['api', 'bot', 'frontend', 'postgres']);
    expect(status.every((item) => item.state === 'running' && item.health === 'healthy')).toBe(true);
  });

  it('serves api /health with the migration revision, /stats and the frontend page on 127.0.0.1', async () => {
    const health = await getJson(`http://127.0.0.1:${stack.apiPort}/health`);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', database: 'ok', migration: '0002' });

    const stats = await getJson(`http://127.0.0.1:${stack.apiPort}/stats`);
    expect(stats.status).toBe(200);
    expect(stats.body).toHaveProperty('users');
    expect(stats.body).toHaveProperty('messages');
    expect(stats.body.bot_last_seen).not.toBeNull();

    const page = await fetch(`http://127.0.0.1:${stack.frontendPort}/`, { signal: AbortSignal.timeout(10_000) });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('AIDD Bot');
    const frontendHealth = await getJson(`http://127.0.0.1:${stack.frontendPort}/healthz`);
    expect(frontendHealth).toMatchObject({ status: 200, body: { status: 'ok' } });
  });

  it('the Next.js page in headless Chromium shows the api numbers, new rows after a reload, and a clear error while the api is down', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const url = `http://127.0.0.1:${stack.frontendPort}/`;
      const shown = async () => {
        const cell = async (id: string) => (await page.getByTestId(id).textContent({ timeout: 10_000 }))?.trim();
        return { users: Number(await cell('users')), messages: Number(await cell('messages')), migration: await cell('migration') };
      };
      const fromApi = async () => {
        const [stats, health] = [await getJson(`http://127.0.0.1:${stack.apiPort}/stats`), await getJson(`http://127.0.0.1:${stack.apiPort}/health`)];
        return { users: Number(stats.body.users), messages: Number(stats.body.messages), migration: String(health.body.migration) };
      };

      expect((await page.goto(url, { timeout: 30_000 }))?.status()).toBe(200);
      const before = await fromApi();
      expect(await shown()).toEqual(before);

      await runner.run(sql("INSERT INTO tg_users (id, username) VALUES (7001, 'browser-a'), (7002, 'browser-b') ON CONFLICT DO NOTHING"));
      await runner.run(sql("INSERT INTO messages (user_id, text) VALUES (7001, 'one'), (7001, 'two'), (7002, 'three')"));
      await page.reload({ timeout: 30_000 });
      expect(await shown()).toEqual({ ...before, users: before.users + 2, messages: before.messages + 3 });
      expect(await shown()).toEqual(await fromApi());
      await page.screenshot({ path: artifactPath('frontend-page.png'), fullPage: true });

      // The api gone: the page says so, the frontend container keeps running and stays healthy.
      await runner.run(stack.compose(['stop', 'api']));
      expect((await page.reload({ timeout: 30_000 }))?.status()).toBe(200);
      await expect(page.getByTestId('api-error').textContent({ timeout: 10_000 })).resolves.toMatch(/The statistics API is not available right now/);
      expect(await page.getByTestId('users').count()).toBe(0);
      await page.screenshot({ path: artifactPath('frontend-api-down.png'), fullPage: true });
      const frontend = (await localAccess(runner, stack.target.projectName).containers()).find((item) => item.service === 'frontend');
      expect(frontend).toMatchObject({ state: 'running' });
      expect(await getJson(`http://127.0.0.1:${stack.frontendPort}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } });

      await upAndHealthy();
      await page.reload({ timeout: 30_000 });
      expect(await shown()).toEqual({ ...before, users: before.users + 2, messages: before.messages + 3 });
    } finally {
      await browser.close();
    }
  });

  it('smoke-test finds the published ports of a local compose project by itself', async () => {
    const result = await runner.attempt({
      argv: scriptArgv('smoke-test', ['--project', stack.target.projectName, '--json']),
      env: { CI: 'true' },
      timeoutMs: 120_000,
    });
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; checks: { name: string; ok: boolean; ms: number }[] };
    expect(report.ok).toBe(true);
    expect(report.checks.map((check) => check.name)).toEqual(
      expect.arrayContaining(['postgres container', 'api container', 'bot container', 'frontend container', 'api health', 'api stats', 'frontend health', 'frontend page']),
    );
  });

  it('api /health answers 503 while the database is down and 200 again when it is back', async () => {
    await runner.run(stack.compose(['stop', 'postgres']));
    const down = await fetch(`http://127.0.0.1:${stack.apiPort}/health`, { signal: AbortSignal.timeout(10_000) });
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ status: 'error' });
    const page = await fetch(`http://127.0.0.1:${stack.frontendPort}/`, { signal: AbortSignal.timeout(10_000) });
    expect(await page.text()).toContain('The statistics API is not available right now');
    await upAndHealthy();
  });

  it('the bot refuses a malformed token with one clear line and exit code 2, never echoing it', async () => {
    const token = '12345:not-a-real-token';
    const result = await runner.attempt(stack.compose(['run', '--rm', '--no-deps', '-T', '-e', 'BOT_MODE=polling', '-e', `BOT_TOKEN=${token}`, 'bot'], { timeoutMs: 120_000 }));
    expect(result.exitCode).toBe(2);
    expect(result.stdout + result.stderr).toMatch(/BOT_TOKEN is malformed/);
    expect(result.stdout + result.stderr).not.toContain(token);
  });

  it('keeps database rows across a full restart and re-running migrations', async () => {
    await runner.run(sql("INSERT INTO tg_users (id, username) VALUES (4242, 'e2e') ON CONFLICT DO NOTHING"));
    await runner.run(sql("INSERT INTO messages (user_id, text) VALUES (4242, 'survives restarts')"));
    const before = await getJson(`http://127.0.0.1:${stack.apiPort}/stats`);
    expect(before.body.messages).toBeGreaterThanOrEqual(1);

    await runner.run(stack.compose(['down']));
    await upAndHealthy();
    await runner.run(stack.compose(['run', '--rm', '-T', 'api', 'migrate']));

    const rows = await runner.run(sql("SELECT count(*) FROM messages WHERE text = 'survives restarts'"));
    expect(rows.stdout.trim()).toBe('1');
    const revision = await runner.run(sql('SELECT version_num FROM alembic_version'));
    expect(revision.stdout.trim()).toBe('0002');
    const after = await getJson(`http://127.0.0.1:${stack.apiPort}/stats`);
    expect(after.body.users).toBe(before.body.users);
    expect(after.body.messages).toBe(before.body.messages);
  });

  it('tears down only its own containers, networks and volumes', async () => {
    const others = (await runner.run({ argv: ['docker', 'ps', '--all', '--quiet'] })).stdout.split('\n').filter(Boolean);
    const ours = (await projectLeftovers(runner, stack.target.projectName)).filter((item) => item.startsWith('container '));
    await runner.run(stack.compose(['down', '--volumes', '--remove-orphans']));
    expect(await projectLeftovers(runner, stack.target.projectName)).toEqual([]);
    const remaining = (await runner.run({ argv: ['docker', 'ps', '--all', '--quiet'] })).stdout.split('\n').filter(Boolean);
    const othersKept = others.filter((id) => !ours.includes(`container ${id}`));
    expect(othersKept.filter((id) => !remaining.includes(id))).toEqual([]);
  });
});
