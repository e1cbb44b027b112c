#!/usr/bin/env bats
load common

setup() {
  scratch="$(mktemp -d)"
  ssh-keygen -q -t ed25519 -N '' -f "$scratch/key"
  : > "$scratch/known_hosts"
  unset SSH_HOST SSH_USER SSH_PORT SSH_KEY SSH_KEY_FILE SSH_KNOWN_HOSTS SSH_KNOWN_HOSTS_FILE DEPLOY_PATH
}

teardown() {
  rm -rf "$scratch"
}

@test "ssh-deploy --help lists the modes, the SSH flags and their environment twins" {
  run script ssh-deploy --help
  assert_success
  assert_output --partial '--host HOST'
  assert_output --partial '[env SSH_HOST]'
  assert_output --partial '--rollback'
  assert_output --partial '--break-lock'
  assert_output --partial 'REGISTRY_TOKEN'
}

@test "ssh-deploy without a host names --host and SSH_HOST, never waits for input" {
  run --separate-stderr script ssh-deploy --user deploy --owner me
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: no server given; pass --host HOST or set SSH_HOST"
}

@test "ssh-deploy without a user names --user" {
  run --separate-stderr script ssh-deploy --host 127.0.0.1 --owner me
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: no SSH user given; pass --user USER or set SSH_USER"
}

@test "ssh-deploy refuses a bad port" {
  run --separate-stderr script ssh-deploy --host 127.0.0.1 --user deploy --port 70000 --owner me
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: --port 70000 is not a TCP port (1-65535)"
}

@test "ssh-deploy names an unreadable key file before connecting" {
  run --separate-stderr script ssh-deploy --host 127.0.0.1 --user deploy --key "$scratch/missing" --known-hosts "$scratch/known_hosts" --owner me
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: SSH key $scratch/missing cannot be read; pass --key PATH (or SSH_KEY with the key's content)"
}

@test "ssh-deploy names a missing known_hosts file and never accepts keys blindly" {
  run --separate-stderr script ssh-deploy --host 127.0.0.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/none" --owner me
  assert_failure 2
  assert_output ""
  assert_equal "$stderr" "ssh-deploy: error: known_hosts file $scratch/none does not exist; pass --known-hosts PATH or SSH_KNOWN_HOSTS (ssh-keyscan output verified out of band)"
}

@test "ssh-deploy refuses two modes at once" {
  run --separate-stderr script ssh-deploy --status --history
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: --status and --history cannot be combined; pick one"
}

@test "ssh-deploy --dry-run prints the plan with the registry token redacted and connects nowhere" {
  export REGISTRY_TOKEN="dry-run-token-$RANDOM$RANDOM"
  export SSH_KEY="$(cat "$scratch/key")"
  run --separate-stderr script ssh-deploy --dry-run --host 192.0.2.1 --user deploy --known-hosts "$scratch/known_hosts" --owner me --path /srv/app
  assert_success
  [[ "$stderr" == *"[dry-run] \$ ssh "*"'bash -s' <<< (script on stdin)"* ]]
  [[ "$stderr" == *"registry=ghcr.io"*"docker login \"\$registry\""*"--password-stdin"* ]]
  [[ "$stderr" == *"[REDACTED]"* ]]
  [[ "$stderr" != *"$REGISTRY_TOKEN"* ]]
  [[ "$stderr" != *"PRIVATE KEY"* ]]
  [[ "$stderr" == *"deploy=/srv/app"* ]]
}

@test "ssh-deploy checks --server-env against the production schema before connecting, naming variables not values" {
  printf 'POSTGRES_PASSWORD=short-but-secret\nBOT_MODE=polling\nBOT_TOKEN=not-a-token-value\nIMAGE_OWNER=Upper\n' > "$scratch/.env.production"
  run --separate-stderr script ssh-deploy --host 192.0.2.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me --server-env "$scratch/.env.production"
  assert_failure 2
  assert_equal "${#stderr_lines[@]}" 1
  [[ "$stderr" == "ssh-deploy: error: --server-env $scratch/.env.production is not ready for production ("*"POSTGRES_PASSWORD: "*"BOT_TOKEN: "*"IMAGE_OWNER: "*"fix it with: npx tsx scripts/setup-env.ts --target production --file $scratch/.env.production" ]]
  [[ "$stderr" != *"short-but-secret"* ]]
  [[ "$stderr" != *"not-a-token-value"* ]]
}

@test "ssh-deploy names a missing --server-env" {
  run --separate-stderr script ssh-deploy --host 192.0.2.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me --server-env "$scratch/none"
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: --server-env $scratch/none does not exist; create it with: npx tsx scripts/setup-env.ts --target production --file $scratch/none"
}

@test "ssh-deploy on an app outside git says so, and its --dry-run plan shows no value of the uploaded .env" {
  cp -r "${ROOT}/examples/hello-compose" "$scratch/app"
  printf 'OPENAI_API_KEY=sk-live-%s\nSHOP_TITLE=title-%s\n' "$RANDOM$RANDOM$RANDOM" "$RANDOM$RANDOM" > "$scratch/app.env"
  chmod 600 "$scratch/app.env"
  run --separate-stderr script ssh-deploy --dry-run --compose "$scratch/app/docker-compose.yml" --host 192.0.2.1 --user deploy \
    --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me --registry 127.0.0.1:5000 --server-env "$scratch/app.env"
  assert_success
  [[ "$stderr" == *"ssh-deploy: warning: $scratch/app is not in a git repository with a commit, and the images name no commit they were built from; the release records revision \"unknown\" (pass --revision SHA)"* ]]
  [[ "$stderr" == *'"revision": "unknown"'* ]]
  [[ "$stderr" == *"image: 127.0.0.1:5000/me/hello-web:latest"* ]]
  # The release keeps the x-app extension field as written; no service keeps its build:.
  [[ "$stderr" != *"|     build:"* ]]
  for value in $(cut -d= -f2 "$scratch/app.env"); do
    [[ "$stderr" != *"$value"* ]]
  done
}

@test "ssh-deploy refuses an unknown --target, and on a swarm target a port bound to one address, before connecting" {
  run --separate-stderr script ssh-deploy --target kubernetes --host 192.0.2.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/known_hosts" --status
  assert_failure 2
  assert_equal "$stderr" 'ssh-deploy: error: --target "kubernetes" is neither compose nor swarm'
  # Hello Compose publishes web on 127.0.0.1 only: a swarm cannot keep that.
  run --separate-stderr script ssh-deploy --target swarm --compose "${ROOT}/examples/hello-compose/docker-compose.yml" --host 192.0.2.1 --user deploy \
    --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: services.web.ports[0]: a swarm publishes a port on every address of its nodes, so 127.0.0.1 cannot be kept; publish it without an address (the firewall or the proxy decides who reaches it)"
}

@test "ssh-deploy --dry-run to a swarm prints the stack deploy, the .env values and the token redacted" {
  cp -r "${ROOT}/examples/hello-compose" "$scratch/app"
  sed -i 's/"127.0.0.1:8480:8080"/"8480:8080"/' "$scratch/app/docker-compose.yml"
  printf 'target: swarm\nswarm: {replicas: {web: 2}}\n' >> "$scratch/app/aidd.yml"
  printf 'GREETING=greeting-%s\n' "$RANDOM$RANDOM$RANDOM" > "$scratch/app.env"
  chmod 600 "$scratch/app.env"
  export REGISTRY_USER=me REGISTRY_TOKEN="swarm-token-$RANDOM$RANDOM"
  run --separate-stderr script ssh-deploy --dry-run --compose "$scratch/app/docker-compose.yml" --host 192.0.2.1 --user deploy \
    --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me --registry 127.0.0.1:5000 --server-env "$scratch/app.env"
  assert_success
  [[ "$stderr" == *"==> Rolling out "*"(docker stack deploy, new tasks first)"* ]]
  [[ "$stderr" == *"docker stack deploy --with-registry-auth --prune --compose-file docker-compose.yml"* ]]
  [[ "$stderr" == *"replicas: 2"* ]]
  [[ "$stderr" == *"order: start-first"* ]]
  [[ "$stderr" != *"$(cut -d= -f2 "$scratch/app.env")"* ]]
  [[ "$stderr" != *"$REGISTRY_TOKEN"* ]]
}

@test "on GitHub Actions, ssh-deploy's error is also an annotation, and a run that failed before deploying writes the job summary" {
  export GITHUB_ACTIONS=true
  run --separate-stderr script ssh-deploy --host 192.0.2.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/known_hosts" --owner me --tag 'v1;reboot'
  assert_failure 2
  assert_equal "${#stderr_lines[@]}" 2
  assert_equal "${stderr_lines[0]}" 'ssh-deploy: error: --tag "v1;reboot" is not an image tag (letters, digits, _ . -; up to 128)'
  assert_equal "${stderr_lines[1]}" '::error title=ssh-deploy::--tag "v1;reboot" is not an image tag (letters, digits, _ . -; up to 128)'

  export GITHUB_STEP_SUMMARY="$scratch/summary.md"
  run --separate-stderr script ssh-deploy --host 192.0.2.1 --user deploy --report-failure 'writing .env.production from the secrets failed'
  assert_failure 1
  assert_equal "$(cat "$scratch/summary.md")" "$(printf '### deploy: failed\n\nrelease `-`, previous `-`\n\n**failed before the deploy started: writing .env.production from the secrets failed**')"
}
