import { describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { DEFAULT_COMPOSE_FILE } from '../../lib/app/target.ts';
import { appEnvSchema } from '../../lib/env/app-env.ts';
import {
  displayValue,
  findVariable,
  formats,
  generateSecret,
  MASK,
  newFileValues,
  oneOf,
  validate,
  valuesFromEnvironment,
  variablesIn,
  type Format,
} from '../../lib/env/env-schema.ts';

const schema = appEnvSchema(await loadComposeApp(DEFAULT_COMPOSE_FILE));
const TOKEN = '123456789:AAbbccddeeffgghhiijjkkllmmnnooppqqr';

function accepts(format: Format, value: string, scope: 'local' | 'production' | 'ci' = 'production'): boolean {
  return format.check(value, scope) === undefined;
}

describe('format checks', () => {
  it("takes an app's own pattern from its aidd.yml: the reference app's Telegram token", () => {
    const format = findVariable(schema, 'BOT_TOKEN')!.format;
    for (const value of [TOKEN, '12345:abcdefghijklmnopqrstuvwxyz_-ABCD']) expect(accepts(format, value), value).toBe(true);
    for (const value of ['', 'abc:def', '1234:abcdefghijklmnopqrstuvwxyz1234', `${TOKEN} `, '123456789:short']) expect(accepts(format, value), value).toBe(false);
  });

  it.each<[keyof typeof formats, string[], string[]]>([
    ['text', ['anything at all', '', 'a=b "c"'], ['two\nlines']],
    ['url', ['https://api.telegram.org', 'http://127.0.0.1:8081/bot'], ['api.telegram.org', 'ftp://x.example', 'https://', 'not a url']],
    ['port', ['1', '8000', '65535'], ['0', '65536', '80a', '-1', '', '123456']],
    ['lowercaseOwner', ['acme', 'my-org', 'a.b_c', 'org/team'], ['Acme', '-acme', 'acme-', 'a..b', 'has space', '']],
    ['imageDigest', [`@sha256:${'a'.repeat(64)}`], [`sha256:${'a'.repeat(64)}`, `@sha256:${'A'.repeat(64)}`, `@sha256:${'a'.repeat(63)}`]],
    ['ipAddress', ['127.0.0.1', '0.0.0.0', '::1'], ['localhost', '256.1.1.1']],
    ['host', ['deploy.example.com', '10.0.0.5', 'server1'], ['-bad.example', 'has space', 'a_b.example']],
    ['registryHost', ['ghcr.io', 'localhost:5000'], ['GHCR.io', 'https://ghcr.io', 'ghcr.io/']],
    ['imageReference', ['postgres:16-alpine', 'ghcr.io/acme/base:1', `debian@sha256:${'0'.repeat(64)}`], ['Postgres', 'has space:1']],
    ['imageTag', ['latest', 'v1.2.3', 'sha-abc123'], ['-x', 'a/b', '']],
    ['positiveInteger', ['1', '10'], ['0', '01', '-1', '1.5']],
    ['identifier', ['aidd', 'app_db'], ['1db', 'my-db', '']],
    ['absolutePath', ['/opt/aidd'], ['opt/aidd', '/has space']],
    ['privateKey', ['-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n'], ['ssh-ed25519 AAAA user@host', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----']],
    ['knownHosts', ['server ssh-ed25519 AAAA\n# comment\n[server]:2222 ssh-rsa BBBB\n'], ['', 'server', '# only a comment']],
  ])('%s accepts good values and refuses bad ones', (name, good, bad) => {
    for (const value of good) expect(accepts(formats[name], value), value).toBe(true);
    for (const value of bad) expect(accepts(formats[name], value), value).toBe(false);
  });

  it('oneOf accepts only the listed choices', () => {
    expect(accepts(oneOf('polling', 'offline'), 'offline')).toBe(true);
    expect(oneOf('polling', 'offline').check('Polling', 'local')).toBe('not one of polling, offline');
  });

  it('passwords: production wants 16+ characters and no placeholder; local accepts the template placeholder', () => {
    expect(accepts(formats.password, 'change-me-local-only', 'local')).toBe(true);
    expect(formats.password.check('change-me-local-only', 'production')).toMatch(/placeholder/);
    expect(formats.password.check('short-pw-12', 'production')).toMatch(/too short: production needs 16/);
    expect(formats.password.check('short', 'local')).toMatch(/too short: local needs 8/);
    expect(formats.password.check('aaaaaaaaaaaaaaaaaaaa', 'production')).toMatch(/too weak/);
    expect(accepts(formats.password, 'correct horse battery staple', 'production')).toBe(true);
  });

  it('never quotes the value in a reason', () => {
    const secretLike = 'S3cr3t-Value-That-Must-Not-Leak';
    for (const [name, format] of Object.entries(formats)) {
      for (const scope of ['local', 'production', 'ci'] as const) {
        const reason = format.check(`${secretLike} :#`, scope) ?? '';
        expect(reason, name).not.toContain(secretLike);
      }
    }
  });
});

describe('generateSecret', () => {
  it('makes distinct 32-character base64url values that pass the production password check', () => {
    const values = new Set(Array.from({ length: 50 }, generateSecret));
    expect(values.size).toBe(50);
    for (const value of values) {
      expect(value).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(formats.password.check(value, 'production')).toBeUndefined();
    }
  });
});

describe('validate', () => {
  const complete = {
    POSTGRES_PASSWORD: generateSecret(),
    BOT_MODE: 'polling',
    BOT_TOKEN: TOKEN,
    IMAGE_OWNER: 'acme',
  };

  it('accepts a complete production file and lists each missing or invalid variable by name', () => {
    expect(validate(complete, schema, 'production')).toEqual([]);
    expect(validate({ API_PORT: '99999', IMAGE_OWNER: 'Acme' }, schema, 'production')).toEqual([
      { name: 'POSTGRES_PASSWORD', reason: 'missing: required' },
      { name: 'BOT_TOKEN', reason: 'missing: required when BOT_MODE=polling' },
      { name: 'API_PORT', reason: 'not a TCP port (1-65535)' },
      { name: 'IMAGE_OWNER', reason: expect.stringMatching(/^not a lowercase registry namespace/) },
    ]);
  });

  it('requires BOT_TOKEN when BOT_MODE is polling, including by default, and not when offline', () => {
    const { BOT_TOKEN: _, ...withoutToken } = complete;
    const { BOT_MODE: __, ...defaultMode } = withoutToken;
    expect(validate(withoutToken, schema, 'production').map((problem) => problem.name)).toEqual(['BOT_TOKEN']);
    expect(validate(defaultMode, schema, 'production').map((problem) => problem.name)).toEqual(['BOT_TOKEN']);
    expect(validate({ ...withoutToken, BOT_MODE: 'offline' }, schema, 'production')).toEqual([]);
  });

  it('refuses CI-only variables in a file', () => {
    expect(validate({ ...complete, SSH_KEY: 'x' }, schema, 'production')).toEqual([{ name: 'SSH_KEY', reason: expect.stringMatching(/CI\/deploy variable/) }]);
  });

  it('only asks for variables of the scope', () => {
    expect(validate({ POSTGRES_PASSWORD: 'local-password', BOT_MODE: 'offline' }, schema, 'local')).toEqual([]);
    expect(variablesIn(schema, 'local').map((spec) => spec.name)).not.toContain('IMAGE_OWNER');
    expect(validate({}, schema, 'ci').map((problem) => problem.name)).toEqual(['IMAGE_OWNER', 'REGISTRY_USER', 'REGISTRY_TOKEN', 'SSH_HOST', 'SSH_USER', 'SSH_KEY', 'SSH_KNOWN_HOSTS']);
  });
});

describe('the schema', () => {
  it('describes every variable once, with a one-line description and a default or requirement', () => {
    const names = schema.variables.map((spec) => spec.name);
    expect(new Set(names).size).toBe(names.length);
    for (const spec of schema.variables) {
      expect(spec.description, spec.name).toMatch(/^[A-Z].*\.$/);
      expect(spec.description, spec.name).not.toContain('\n');
      expect(spec.scopes.length, spec.name).toBeGreaterThan(0);
      for (const scope of spec.requiredIn) expect(spec.scopes, spec.name).toContain(scope);
      if (spec.default !== undefined) expect(spec.format.check(spec.default, spec.scopes[0]!), spec.name).toBeUndefined();
      if (spec.requiredWhen) expect(findVariable(schema, spec.requiredWhen.name), spec.name).toBeDefined();
    }
  });

  it('marks the credentials secret', () => {
    const secrets = schema.variables.filter((spec) => spec.secret).map((spec) => spec.name);
    expect(secrets).toEqual(['POSTGRES_PASSWORD', 'BOT_TOKEN', 'REGISTRY_TOKEN', 'SSH_KEY']);
  });

  it('starts a new file from the template values without secret placeholders', () => {
    const values = newFileValues(schema, 'local');
    expect(values).toMatchObject({ BOT_MODE: 'offline', API_PORT: '8000', BIND_ADDRESS: '127.0.0.1' });
    expect(values).not.toHaveProperty('POSTGRES_PASSWORD');
    expect(values).not.toHaveProperty('PYTHON_BASE_IMAGE');
  });
});

describe('valuesFromEnvironment', () => {
  it('reads the scope variables, treats empty ones as unset and accepts CI aliases', () => {
    const env = { API_PORT: '8080', BOT_TOKEN: '', SSH_KEY: 'ignored in production', GHCR_TOKEN: 'ghp_alias_value' };
    expect(valuesFromEnvironment(schema, 'production', env)).toEqual({ API_PORT: '8080' });
    expect(valuesFromEnvironment(schema, 'ci', env)).toMatchObject({ REGISTRY_TOKEN: 'ghp_alias_value', SSH_KEY: 'ignored in production' });
    expect(valuesFromEnvironment(schema, 'ci', { ...env, REGISTRY_TOKEN: 'own' }).REGISTRY_TOKEN).toBe('own');
  });
});

describe('displayValue', () => {
  it('masks secrets whatever their length and shows other values', () => {
    expect(displayValue(findVariable(schema, 'BOT_TOKEN'), TOKEN)).toBe(MASK);
    expect(displayValue(findVariable(schema, 'POSTGRES_PASSWORD'), 'x')).toBe(MASK);
    expect(displayValue(findVariable(schema, 'API_PORT'), '8000')).toBe('8000');
    expect(displayValue(findVariable(schema, 'BOT_TOKEN'), '')).toBe('(empty)');
  });
});
