#!/usr/bin/env bats
# setup-env without a terminal: flags and the environment supply the values, stdin is closed.
load setup-env

setup() {
  WORK="${BATS_TEST_TMPDIR}/work"
  mkdir -p "${WORK}"
  cd "${WORK}"
  unset POSTGRES_PASSWORD BOT_TOKEN BOT_MODE IMAGE_OWNER API_PORT AIDD_ENV_TARGET
}

teardown() {
  leak_keep_env_files "${WORK}"
}

# A complete production file, made from the environment.
complete_production_file() {
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" setup_env --target production --set IMAGE_OWNER=acme "$@" >/dev/null 2>&1
}

@test "setup-env --help describes the flags, their environment twins and the exit codes" {
  run setup_env --help
  assert_success
  assert_output --partial 'Usage: npx tsx scripts/setup-env.ts'
  assert_output --partial '--target local|production'
  assert_output --partial '[env AIDD_ENV_TARGET]'
  assert_output --partial '--from-env'
  assert_output --partial '--set NAME=VALUE'
  assert_output --partial 'Exit codes: 0 ok'
}

@test "setup-env rejects an unknown flag and an unknown target with one line and exit 2" {
  run --separate-stderr setup_env --bogus
  assert_failure 2
  lines=("${stderr_lines[@]}")
  assert_one_line_error setup-env
  run --separate-stderr setup_env --target staging
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: --target staging is not one of local, production'
}

@test "without a terminal, each missing value is named with how to supply it, and nothing is written" {
  run --separate-stderr setup_env --target production
  assert_failure 2
  lines=("${stderr_lines[@]}")
  assert_one_line_error setup-env
  assert_equal "$stderr" 'setup-env: error: .env.production cannot be completed without a terminal: POSTGRES_PASSWORD (missing: required; set env POSTGRES_PASSWORD or pass --generate), BOT_TOKEN (missing: required when BOT_MODE=polling; set env BOT_TOKEN), IMAGE_OWNER (missing: required; pass --set IMAGE_OWNER=VALUE or set env IMAGE_OWNER)'
  assert [ ! -e .env.production ]
}

@test "flags and environment variables create a complete production file, mode 0600, secrets masked" {
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" run --separate-stderr setup_env --target production --set IMAGE_OWNER=acme --set API_PORT=8080
  assert_success
  assert_line '+ POSTGRES_PASSWORD=********'
  assert_line '+ BOT_TOKEN=********'
  assert_line '+ IMAGE_OWNER=acme'
  assert_line '+ API_PORT=8080'
  assert_equal "$stderr" '==> wrote .env.production (mode 0600, 13 change(s))'
  assert_equal "$(file_mode .env.production)" 600
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" dotenv_equals .env.production POSTGRES_PASSWORD POSTGRES_PASSWORD
  BOT_TOKEN="${KNOWN_TOKEN}" dotenv_equals .env.production BOT_TOKEN BOT_TOKEN
  assert_equal "$(dotenv_value .env.production API_PORT)" 8080
  run setup_env --target production --check
  assert_success
  assert_output '.env.production: ok for production'
}

@test "a new file takes a variable with a default from the environment, not the default; an existing file keeps its value" {
  API_PORT=18001 REGISTRY=registry.example.com POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" IMAGE_OWNER=acme \
    run --separate-stderr setup_env --target production
  assert_success
  assert_equal "$(dotenv_value .env.production API_PORT)" 18001
  assert_equal "$(dotenv_value .env.production REGISTRY)" registry.example.com
  # The file now answers: the environment fills only what it lacks (--from-env makes it win).
  API_PORT=18002 run --separate-stderr setup_env --target production
  assert_success
  assert_equal "$(dotenv_value .env.production API_PORT)" 18001
  API_PORT=abc run --separate-stderr setup_env --target production --file .env.other
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: API_PORT from the environment: not a TCP port (1-65535)'
}

@test "--generate fills the database password with a strong random value" {
  BOT_TOKEN="${KNOWN_TOKEN}" run setup_env --target production --generate --set IMAGE_OWNER=acme
  assert_success
  run node -e 'const v = require(process.argv[1]).parse(require("fs").readFileSync(".env.production")).POSTGRES_PASSWORD; process.exit(/^[A-Za-z0-9_-]{32}$/.test(v) ? 0 : 1)' "${ROOT}/node_modules/dotenv"
  assert_success
}

@test "a secret passed with --set is refused in one line that does not echo it" {
  run --separate-stderr setup_env --target production --set "BOT_TOKEN=${KNOWN_TOKEN}"
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: --set BOT_TOKEN: BOT_TOKEN is secret and would show in the process list and shell history; set the BOT_TOKEN environment variable instead'
  assert [ ! -e .env.production ]
}

@test "--set refuses unknown variables, variables of the other target and invalid values" {
  run --separate-stderr setup_env --set NOPE=1
  assert_failure 2
  assert_regex "$stderr" '^setup-env: error: --set NOPE: not a variable of the local target; its variables: POSTGRES_USER, [A-Z_, ]+$'
  run --separate-stderr setup_env --set IMAGE_OWNER=acme
  assert_failure 2
  assert_regex "$stderr" '^setup-env: error: --set IMAGE_OWNER: not a variable of the local target; its variables: POSTGRES_USER, [A-Z_, ]+$'
  run --separate-stderr setup_env --target production --set API_PORT=99999
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: API_PORT from --set: not a TCP port (1-65535)'
  run --separate-stderr setup_env --set API_PORT
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: --set API_PORT is not NAME=VALUE'
}

@test "--check lists each missing or invalid variable with its reason, never its value, and exits 1" {
  printf '%s\n' 'POSTGRES_PASSWORD=change-me-please-1234' 'BOT_TOKEN=not-a-telegram-token-0009' 'API_PORT=99999' 'IMAGE_OWNER=Acme-Corp' 'SSH_KEY=ssh-key-content-0010' >bad.env
  chmod 600 bad.env
  run --separate-stderr setup_env --target production --file bad.env --check
  assert_failure 1
  assert_equal "$output" "$(printf '%s\n' \
    'POSTGRES_PASSWORD: looks like a template placeholder, not a real password' \
    'BOT_TOKEN: not a Telegram bot token: the bot id, a colon, then 30 or more letters, digits, _ or -' \
    'API_PORT: not a TCP port (1-65535)' \
    'IMAGE_OWNER: not a lowercase registry namespace (a-z, 0-9, and . _ - between them; / for nested)' \
    'SSH_KEY: a CI/deploy variable: keep it in the CI secrets, not in this file')"
  assert_equal "$stderr" 'setup-env: error: bad.env is not ready for production: POSTGRES_PASSWORD, BOT_TOKEN, API_PORT, IMAGE_OWNER, SSH_KEY'
  for value in change-me-please-1234 not-a-telegram-token-0009 99999 Acme-Corp ssh-key-content-0010; do
    refute_output --partial "${value}"
    refute [ "${stderr}" != "${stderr/${value}/}" ]
  done
}

@test "--check --json prints {ok, target, file, problems} without values" {
  printf '%s\n' 'POSTGRES_PASSWORD=x1y2z3' 'BOT_MODE=offline' >local.env
  chmod 600 local.env
  run --separate-stderr setup_env --file local.env --check --json
  assert_failure 1
  assert_equal "$(jq -c '{ok, target, file}' <<<"$output")" "{\"ok\":false,\"target\":\"local\",\"file\":\"${WORK}/local.env\"}"
  assert_equal "$(jq -c '.problems' <<<"$output")" '[{"name":"POSTGRES_PASSWORD","reason":"too short: local needs 8 or more characters"}]'
}

@test "--check reports malformed lines by their line number" {
  printf '%s\n' '# comment' 'POSTGRES_PASSWORD=local-password-1' 'just some words' "BOT_TOKEN='unterminated-0011" 'BOT_MODE=offline' >broken.env
  chmod 600 broken.env
  run --separate-stderr setup_env --file broken.env --check
  assert_failure 1
  assert_line 'line 3: not NAME=VALUE'
  assert_line 'line 4: BOT_TOKEN: the single quote opened here is not closed, or text follows the closing quote'
  refute_output --partial 'unterminated-0011'
  run --separate-stderr setup_env --file broken.env --generate
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: broken.env line 3: not NAME=VALUE; fix it first (--check lists every problem)'
}

@test "--check on a missing file is a usage error that says how to create it" {
  run --separate-stderr setup_env --target production --check
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: .env.production does not exist; create it with: npx tsx scripts/setup-env.ts --target production --file .env.production'
}

@test "--check accepts the local template as a working local file" {
  cp "${ROOT}/examples/aidd-bot/.env.example" .env
  run setup_env --file .env --check
  assert_success
}

@test "re-running on a complete file changes nothing: no write, no backup" {
  complete_production_file
  cp -p .env.production before
  sleep 1
  run --separate-stderr setup_env --target production --json
  assert_success
  assert_equal "$(jq -c '{written, backup, changes}' <<<"$output")" '{"written":false,"backup":null,"changes":[]}'
  assert_equal "$stderr" ''
  cmp .env.production before
  assert_equal "$(stat -c %Y .env.production)" "$(stat -c %Y before)"
  run ls -A
  refute_output --partial '.bak-'
}

@test "a complete file readable by others is set to mode 0600, and the run says so" {
  complete_production_file
  chmod 644 .env.production
  run setup_env --target production --check
  assert_success
  assert_output --partial 'setup-env: warning: .env.production is mode 0644: others can access it'
  run --separate-stderr setup_env --target production
  assert_success
  assert_equal "$stderr" '==> .env.production is complete for production: nothing to change; mode was 0644, set to 0600'
  assert_equal "$(file_mode .env.production)" 600
}

@test "changing a file keeps a timestamped backup of the old one, and its comments and order" {
  complete_production_file
  printf '# my own note\n' >>.env.production
  cp .env.production before
  run --separate-stderr setup_env --target production --set API_PORT=8081 --set BOT_HEARTBEAT_SECONDS=5
  assert_success
  assert_equal "$output" "$(printf '%s\n' '~ BOT_HEARTBEAT_SECONDS=5' '~ API_PORT=8081')"
  backups=(.env.production.bak-*)
  assert_equal "${#backups[@]}" 1
  assert_regex "${backups[0]}" '^\.env\.production\.bak-[0-9]{8}T[0-9]{6}$'
  cmp "${backups[0]}" before
  assert_equal "$(file_mode "${backups[0]}")" 600
  assert_equal "$(file_mode .env.production)" 600
  assert_equal "$(diff before .env.production | grep -c '^[<>]')" 4
  assert_equal "$(tail -n 1 .env.production)" '# my own note'
  assert_equal "$(dotenv_value .env.production API_PORT)" 8081
}

@test "--dry-run shows the masked changes and writes nothing" {
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" run --separate-stderr setup_env --target production --set IMAGE_OWNER=acme --dry-run
  assert_success
  assert_line '+ POSTGRES_PASSWORD=********'
  assert_equal "$stderr" '==> dry run: 13 change(s) to .env.production; nothing was written'
  assert [ ! -e .env.production ]
}

@test "--from-env builds the file from the environment; spaces, #, =, quotes and newlines survive exactly" {
  for password in KNOWN_PASSWORD KNOWN_QUOTED_PASSWORD KNOWN_MULTILINE_PASSWORD; do
    POSTGRES_PASSWORD="${!password}" BOT_TOKEN="${KNOWN_TOKEN}" IMAGE_OWNER=acme API_PORT=8082 run setup_env --target production --file "${password}.env" --from-env
    assert_success
    dotenv_equals "${password}.env" POSTGRES_PASSWORD "${password}"
    run setup_env --target production --file "${password}.env" --check
    assert_success
  done
  assert_equal "$(dotenv_value KNOWN_PASSWORD.env API_PORT)" 8082
  # With --from-env the environment wins over the file; without it, it only fills what is missing.
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" IMAGE_OWNER=other run setup_env --target production --file KNOWN_PASSWORD.env
  assert_success
  assert_equal "$(dotenv_value KNOWN_PASSWORD.env IMAGE_OWNER)" acme
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" IMAGE_OWNER=other run setup_env --target production --file KNOWN_PASSWORD.env --from-env
  assert_success
  assert_line '~ IMAGE_OWNER=other'
  assert_equal "$(dotenv_value KNOWN_PASSWORD.env IMAGE_OWNER)" other
}

@test "an invalid value in the environment is named with its reason, not printed" {
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN='not-a-token-value-0012' IMAGE_OWNER=acme run --separate-stderr setup_env --target production --from-env
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: BOT_TOKEN from the environment (--from-env): not a Telegram bot token: the bot id, a colon, then 30 or more letters, digits, _ or -'
  BOT_TOKEN='not-a-token-value-0012' run --separate-stderr setup_env --target production --generate --set IMAGE_OWNER=acme
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: BOT_TOKEN from the environment: not a Telegram bot token: the bot id, a colon, then 30 or more letters, digits, _ or -'
}

@test "--target local writes .env next to the compose file named by --compose" {
  mkdir app
  cp "${ROOT}/examples/aidd-bot/docker-compose.yml" "${ROOT}/examples/aidd-bot/aidd.yml" app/
  run --separate-stderr setup_env --compose app/docker-compose.yml --generate
  assert_success
  assert_equal "$stderr" '==> wrote app/.env (mode 0600, 9 change(s))'
  assert_equal "$(file_mode app/.env)" 600
  assert_equal "$(dotenv_value app/.env BOT_MODE)" offline
  AIDD_COMPOSE_FILE=app/docker-compose.yml run setup_env --check
  assert_success
  assert_output 'app/.env: ok for local'
}

@test "--json on a write lists the changes by name only" {
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" run --separate-stderr setup_env --target production --set IMAGE_OWNER=acme --json
  assert_success
  assert_equal "$stderr" ''
  assert_equal "$(jq -c '{ok, target, written, dryRun, backup}' <<<"$output")" '{"ok":true,"target":"production","written":true,"dryRun":false,"backup":null}'
  assert_equal "$(jq -r '[.changes[] | select(.action == "add") | .name] | join(",")' <<<"$output")" 'POSTGRES_USER,POSTGRES_PASSWORD,POSTGRES_DB,BOT_MODE,BOT_TOKEN,TELEGRAM_API_BASE,BOT_HEARTBEAT_SECONDS,BIND_ADDRESS,API_PORT,FRONTEND_PORT,REGISTRY,IMAGE_OWNER,IMAGE_TAG'
  refute_output --partial "${KNOWN_PASSWORD}"
}

@test "a CI-only variable in the file is refused before anything is written" {
  complete_production_file
  printf 'SSH_KEY=ssh-key-content-0013\n' >>.env.production
  cp .env.production before
  run --separate-stderr setup_env --target production --set API_PORT=8083
  assert_failure 2
  assert_equal "$stderr" 'setup-env: error: .env.production holds SSH_KEY, a CI/deploy variable: keep it in the CI secrets, not in this file; remove that line'
  cmp .env.production before
}
