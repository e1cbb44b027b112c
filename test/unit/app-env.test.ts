// An app's variables: declared in aidd.yml, or read from its compose files when it declares none.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { DEFAULT_COMPOSE_FILE, REPO_ROOT } from '../../lib/app/target.ts';
import { appEnvSchema } from '../../lib/env/app-env.ts';
import { findVariable, validate, variablesIn } from '../../lib/env/env-schema.ts';
import { TOOLKIT_CI_VARIABLES } from '../../lib/env/toolkit-variables.ts';

const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'needs-vars', 'docker-compose.yml');

function app(compose: string, files: Record<string, string> = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-app-env-'));
  writeFileSync(path.join(dir, 'docker-compose.yml'), compose);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return loadComposeApp(path.join(dir, 'docker-compose.yml'), { vars: {} });
}

describe('variables read from compose', () => {
  it("make the fixture's schema: ${VAR:?} and ${VAR} required, ${VAR:-x} optional with its default", async () => {
    const schema = appEnvSchema(await loadComposeApp(FIXTURE, { vars: {} }));
    const own = variablesIn(schema, 'production').map((spec) => [spec.name, spec.requiredIn.includes('production'), spec.default ?? null]);
    expect(own).toEqual([['GREETING', true, null], ['API_KEY', true, null], ['PORT', false, '8080']]);
    expect(validate({ PORT: '9000' }, schema, 'production').map((problem) => problem.name)).toEqual(['GREETING', 'API_KEY']);
    expect(validate({ GREETING: 'hi', API_KEY: 'k' }, schema, 'local')).toEqual([]);
  });

  it('infer secrets conservatively from the name', async () => {
    const schema = appEnvSchema(await app('services:\n  a:\n    image: x\n    environment: [ "P=${DB_PASSWORD}", "T=${bot_token}", "S=${APP_SECRET:-}", "K=${SSH_KEY_PATH:-}", "N=${NAME:-n}" ]\n'));
    const secret = (name: string) => findVariable(schema, name)?.secret;
    expect(['DB_PASSWORD', 'bot_token', 'APP_SECRET', 'SSH_KEY_PATH'].map(secret)).toEqual([true, true, true, true]);
    expect(secret('NAME')).toBe(false);
  });

  it("take a reference inside another's default as optional, and required wherever one use needs it", async () => {
    const schema = appEnvSchema(await app('services:\n  a:\n    image: "${IMAGE:-${FALLBACK:-busybox}}"\n    environment: [ "A=${MODE:-x}", "B=${MODE?set MODE}" ]\n'));
    expect(findVariable(schema, 'FALLBACK')!.requiredIn).toEqual([]);
    expect(findVariable(schema, 'IMAGE')!.default).toBe('${FALLBACK:-busybox}');
    expect(findVariable(schema, 'MODE')!.requiredIn).toEqual(['local', 'production']);
  });

  it("read the names of a service's env_file as optional variables", async () => {
    const schema = appEnvSchema(await app('services:\n  a: {image: x, env_file: [app.env]}\n', { 'app.env': 'WELCOME=hi\nSTRIPE_KEY=sk_test\n' }));
    expect(findVariable(schema, 'WELCOME')).toMatchObject({ requiredIn: [], secret: false, description: 'Passed to the containers from app.env.' });
    expect(findVariable(schema, 'STRIPE_KEY')!.secret).toBe(true);
  });

  it('need nothing for an app whose compose uses no variable', async () => {
    const schema = appEnvSchema(await loadComposeApp(path.join(REPO_ROOT, 'examples', 'hello-compose', 'docker-compose.yml')));
    expect(variablesIn(schema, 'production')).toEqual([]);
    expect(validate({}, schema, 'production')).toEqual([]);
  });
});

describe('every app schema', () => {
  it("adds the toolkit's CI variables, merging a name the app uses too", async () => {
    const schema = appEnvSchema(await loadComposeApp(DEFAULT_COMPOSE_FILE));
    expect(variablesIn(schema, 'ci').map((spec) => spec.name)).toEqual(expect.arrayContaining(TOOLKIT_CI_VARIABLES.map((spec) => spec.name)));
    const owner = findVariable(schema, 'IMAGE_OWNER')!;
    expect(owner.scopes).toEqual(['production', 'ci']);
    expect(owner.requiredIn).toEqual(['production', 'ci']);
    expect(owner.description).toMatch(/aidd-api/);
  });
});
