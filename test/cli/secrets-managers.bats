#!/usr/bin/env bats
# Secrets from a password manager, the way `op run -- CMD`, `sops exec-env FILE CMD` and `sops exec-file
# FILE 'CMD {}'` hand them over: as environment variables of the command, or as a file that exists only
# while it runs (a FIFO). Small stand-ins for those tools run aidd here; no value ever reaches argv, the
# output or a file other than the 0600 one asked for.
load common

setup() {
  scratch="$(mktemp -d)"
  ssh-keygen -q -t ed25519 -N '' -f "$scratch/key"
  : > "$scratch/known_hosts"
  unset SSH_HOST SSH_USER SSH_PORT SSH_KEY SSH_KEY_FILE SSH_KNOWN_HOSTS SSH_KNOWN_HOSTS_FILE DEPLOY_PATH REGISTRY_TOKEN
  cp -r "${ROOT}/examples/hello-compose" "$scratch/app"
  token="manager-token-$RANDOM$RANDOM$RANDOM"
  api_key="sk-manager-$RANDOM$RANDOM$RANDOM"
  printf 'REGISTRY_TOKEN=%s\n' "$token" > "$scratch/vault.env"
  printf 'OPENAI_API_KEY=%s\nSHOP_TITLE=manager-title-%s\n' "$api_key" "$RANDOM$RANDOM" > "$scratch/app-secrets.env"
  chmod 600 "$scratch/vault.env" "$scratch/app-secrets.env"
  # `op run`/`sops exec-env`: the variables of a secrets file in the environment of the command, never in its argv.
  cat > "$scratch/exec-env" <<'SH'
#!/bin/bash
set -a; . "$1"; set +a
shift
exec "$@"
SH
  # `sops exec-file`: the decrypted file as a FIFO that exists only while the command runs; {} is its path.
  cat > "$scratch/exec-file" <<'SH'
#!/bin/bash
dir=$(mktemp -d); fifo="$dir/secrets.env"; mkfifo -m 600 "$fifo"
cat "$1" > "$fifo" &
shift
args=(); for arg in "$@"; do args+=("${arg//\{\}/$fifo}"); done
"${args[@]}"; status=$?
rm -rf "$dir"; exit "$status"
SH
  chmod +x "$scratch/exec-env" "$scratch/exec-file"
}

teardown() {
  rm -rf "$scratch"
}

aidd() {
  node "${ROOT}/bin/aidd.js" "$@" </dev/null
}

@test "a registry token from the environment a secrets manager set is used and never shown" {
  export CI=true
  run --separate-stderr "$scratch/exec-env" "$scratch/vault.env" node "${ROOT}/bin/aidd.js" deploy --dry-run --compose "$scratch/app/docker-compose.yml" \
    --host 192.0.2.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me --registry 127.0.0.1:5000 --revision abc1234
  assert_success
  # The pull logs in with the token on stdin: the plan shows where it goes, redacted.
  [[ "$stderr" == *'docker login "$registry" --username='* ]]
  [[ "$stderr" == *'[REDACTED]'* ]]
  [[ "$stderr" != *"$token"* ]]
  [[ "$output" != *"$token"* ]]
}

@test "a .env handed over as a FIFO (sops exec-file) is checked and uploaded, its values never shown" {
  export CI=true
  run --separate-stderr "$scratch/exec-file" "$scratch/app-secrets.env" node "${ROOT}/bin/aidd.js" deploy --dry-run --compose "$scratch/app/docker-compose.yml" \
    --host 192.0.2.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me --registry 127.0.0.1:5000 --revision abc1234 --server-env '{}'
  assert_success
  # The release's .env is part of the plan, its values redacted.
  [[ "$stderr" == *'cat > "$rel/.env"'* ]]
  for value in $(cut -d= -f2 "$scratch/app-secrets.env"); do
    [[ "$stderr" != *"$value"* ]]
    [[ "$output" != *"$value"* ]]
  done
}

@test "setup-env writes .env.production from variables a secrets manager set (sops exec-env), 0600, values never shown" {
  export CI=true
  printf 'POSTGRES_PASSWORD=Manager-Pass-%s-x9\nBOT_TOKEN=123456789:manager-token-%sAAAAAAAAAAAAAAAAAAAA\nIMAGE_OWNER=me\n' "$RANDOM$RANDOM" "$RANDOM$RANDOM" > "$scratch/prod-secrets.env"
  chmod 600 "$scratch/prod-secrets.env"
  run --separate-stderr "$scratch/exec-env" "$scratch/prod-secrets.env" node "${ROOT}/bin/aidd.js" env --target production --from-env --generate --file "$scratch/.env.production"
  assert_success
  assert_equal "$(stat -c %a "$scratch/.env.production")" 600
  for line in $(cat "$scratch/prod-secrets.env"); do grep -qxF "$line" "$scratch/.env.production"; done
  # The secrets are masked; IMAGE_OWNER is not a secret.
  for line in $(grep -E '^(POSTGRES_PASSWORD|BOT_TOKEN)=' "$scratch/prod-secrets.env"); do
    [[ "$stderr" != *"${line#*=}"* ]]
    [[ "$output" != *"${line#*=}"* ]]
  done
  [[ "$output" == *'POSTGRES_PASSWORD=********'* ]]
}
