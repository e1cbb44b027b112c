#!/usr/bin/env bats
# Runs the setup-env tests again, collecting everything they print (every run's stdout and stderr, each
# terminal screen of the walkthroughs, bats' own report) and every env file they leave, then searches
# that output for every secret value used: the known ones in setup-env.bash, and each secret variable's
# value in those files (generated passwords and deliberately invalid secrets included).
load setup-env

@test "no secret value used by the setup-env tests appears anywhere in their output" {
  export AIDD_LEAK_DIR="${BATS_TEST_TMPDIR}/leak"
  mkdir -p "${AIDD_LEAK_DIR}/files"
  run "${ROOT}/node_modules/bats/bin/bats" --tap "${ROOT}/test/cli/setup-env.bats" "${ROOT}/test/cli/setup-env-interactive.bats"
  printf '%s\n' "${output}" >>"${AIDD_LEAK_DIR}/output.log"
  assert_success

  cat >"${BATS_TEST_TMPDIR}/scan.mts" <<EOF
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadComposeApp } from '${ROOT}/lib/app/compose.ts';
import { DEFAULT_COMPOSE_FILE } from '${ROOT}/lib/app/target.ts';
import { appEnvSchema } from '${ROOT}/lib/env/app-env.ts';
import { parseEnvText } from '${ROOT}/lib/env/env-file.ts';

const dir = process.argv[2]!;
const secretNames = appEnvSchema(await loadComposeApp(DEFAULT_COMPOSE_FILE)).variables.filter((variable) => variable.secret).map((variable) => variable.name);
const secrets = new Set(['KNOWN_PASSWORD', 'KNOWN_TOKEN', 'KNOWN_QUOTED_PASSWORD', 'KNOWN_MULTILINE_PASSWORD'].map((name) => process.env[name]!));
const files = readdirSync(path.join(dir, 'files'));
for (const file of files) {
  const values = parseEnvText(readFileSync(path.join(dir, 'files', file), 'utf8')).values;
  for (const name of secretNames) if (values[name]) secrets.add(values[name]);
}
const output = readFileSync(path.join(dir, 'output.log'), 'utf8');
// A whole value, or any line of a multi-line one.
const leaked = [...secrets].filter((secret) => [secret, ...secret.split('\n')].some((part) => part.length >= 8 && output.includes(part)));
// Counts only: the values themselves are never printed.
console.log(JSON.stringify({ secrets: secrets.size, files: files.length, outputLines: output.split('\n').length, leaked: leaked.length }));
process.exit(leaked.length === 0 ? 0 : 1);
EOF
  run "${TSX}" "${BATS_TEST_TMPDIR}/scan.mts" "${AIDD_LEAK_DIR}"
  assert_success
  # The search must have had something to search: many files, values and lines.
  assert [ "$(jq '.secrets' <<<"${output}")" -ge 10 ]
  assert [ "$(jq '.files' <<<"${output}")" -ge 15 ]
  assert [ "$(jq '.outputLines' <<<"${output}")" -ge 300 ]
}
