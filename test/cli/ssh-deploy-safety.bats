#!/usr/bin/env bats
# Issue 9 without a server: values checked before anything connects (finding 1), the private SSH
# directory removed on every exit path (finding 2), and --json ending every run with one JSON object
# (finding 9).
load common

setup() {
  scratch="$(mktemp -d)"
  ssh-keygen -q -t ed25519 -N '' -f "$scratch/key"
  : > "$scratch/known_hosts"
  # The scripts make their private SSH directory here: it must be empty again however a run ends.
  export TMPDIR="$scratch/tmp"
  mkdir "$TMPDIR"
  unset SSH_HOST SSH_USER SSH_PORT SSH_KEY SSH_KEY_FILE SSH_KNOWN_HOSTS SSH_KNOWN_HOSTS_FILE DEPLOY_PATH GITHUB_SHA
  images="$scratch/images.json"
  local digest="@sha256:$(printf 'a%.0s' $(seq 64))"
  printf '{"revision":"abc123","images":[{"service":"api","repository":"ghcr.io/me/aidd-api","ref":"ghcr.io/me/aidd-api%s"},{"service":"bot","repository":"ghcr.io/me/aidd-bot","ref":"ghcr.io/me/aidd-bot%s"},{"service":"frontend","repository":"ghcr.io/me/aidd-frontend","ref":"ghcr.io/me/aidd-frontend%s"}]}\n' "$digest" "$digest" "$digest" > "$images"
  dry=(--dry-run --host 192.0.2.1 --user deploy --key "$scratch/key" --known-hosts "$scratch/known_hosts")
}

teardown() {
  if [ -n "${server_pid:-}" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}

# What the scripts left in TMPDIR, besides tsx's own cache.
leftovers() {
  ls -A "$TMPDIR" | grep -v '^tsx-' || true
}

# A TCP port that accepts connections and never answers: ssh waits there until its timeout. Sets $port.
silent_server() {
  node -e 'const s = require("net").createServer(() => {}).listen(0, "127.0.0.1", () => require("fs").writeFileSync(process.argv[1], String(s.address().port)))' "$scratch/port" </dev/null >/dev/null 2>&1 3>&- &
  server_pid=$!
  for _ in $(seq 50); do [ -s "$scratch/port" ] && break; sleep 0.1; done
  port=$(cat "$scratch/port")
}

@test "a hostile --tag is refused before anything connects, naming the flag; nothing runs" {
  run --separate-stderr script ssh-deploy "${dry[@]}" --owner me --tag "x\$(touch $scratch/PWN)"
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: --tag \"x\$(touch $scratch/PWN)\" is not an image tag (letters, digits, _ . -; up to 128)"
  [[ ! -e "$scratch/PWN" ]]
}

@test "a hostile --revision is refused before the dry-run plan is printed" {
  run --separate-stderr script ssh-deploy "${dry[@]}" --images-from "$images" --revision '$(reboot)'
  assert_failure 2
  [[ "$stderr" == 'ssh-deploy: error: --revision "$(reboot)" is not a revision'* ]]
  [[ "$stderr" != *"[dry-run]"* ]]
}

@test "--rollback --to is checked before connecting" {
  run --separate-stderr script ssh-deploy "${dry[@]}" --rollback --to '../../etc'
  assert_failure 2
  [[ "$stderr" == 'ssh-deploy: error: --to "../../etc" is not a release id'* ]]
  [[ "$stderr" != *"[dry-run]"* ]]
}

@test "an images file that leaves services out is refused unless they are named with --unpinned" {
  printf '{"revision":"abc123","images":[{"service":"api","repository":"ghcr.io/me/aidd-api","ref":"ghcr.io/me/aidd-api:1"}]}\n' > "$scratch/partial.json"
  run --separate-stderr script ssh-deploy "${dry[@]}" --owner me --images-from "$scratch/partial.json"
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: --images-from $scratch/partial.json has no image for bot, frontend; build them too, or pass --unpinned bot --unpinned frontend to run the image their compose line names, unpinned"
  run --separate-stderr script ssh-deploy "${dry[@]}" --owner me --images-from "$scratch/partial.json" --unpinned bot --unpinned frontend
  assert_success
}

@test "a key given as content never outlives a run that fails before connecting" {
  export SSH_KEY="$(cat "$scratch/key")"
  run --separate-stderr script ssh-deploy --host 192.0.2.1 --user deploy --known-hosts "$scratch/none" --images-from "$images"
  assert_failure 2
  [[ "$stderr" == *"known_hosts file $scratch/none does not exist"* ]]
  assert_equal "$(leftovers)" ""
}

@test "the private SSH directory is gone after a failed connection, and --json still prints one JSON object" {
  export SSH_KEY="$(cat "$scratch/key")"
  silent_server
  run --separate-stderr script ssh-deploy --host 127.0.0.1 --port "$port" --user deploy --known-hosts "$scratch/known_hosts" --images-from "$images" --json
  assert_failure 2
  assert_equal "$(leftovers)" ""
  assert_equal "$(jq -r '[.ok, .action, .result, .failedStep] | join(" ")' <<<"$output")" "false deploy failed connect"
  [[ "$(jq -r .error <<<"$output")" == "cannot reach 127.0.0.1:"* ]]
}

@test "--json prints one JSON object for bad input too" {
  run --separate-stderr script ssh-deploy "${dry[@]}" --owner me --tag 'bad tag' --json
  assert_failure 2
  assert_equal "$(jq -c '{ok, action, result}' <<<"$output")" '{"ok":false,"action":"deploy","result":"failed"}'
  [[ "$(jq -r .error <<<"$output")" == '--tag "bad tag" is not an image tag'* ]]
}

@test "a second SIGINT exits at once, still removing the private SSH directory and printing the JSON" {
  export SSH_KEY="$(cat "$scratch/key")"
  silent_server
  "$TSX" "$ROOT/scripts/ssh-deploy.ts" --host 127.0.0.1 --port "$port" --user deploy --known-hosts "$scratch/known_hosts" --images-from "$images" --json \
    </dev/null >"$scratch/out" 2>"$scratch/err" 3>&- &
  local pid=$!
  for _ in $(seq 100); do [ -n "$(leftovers)" ] && break; sleep 0.1; done
  [ -n "$(leftovers)" ]
  sleep 0.5
  kill -INT "$pid"
  sleep 1.5
  kill -INT "$pid"
  local code=0
  wait "$pid" || code=$?
  assert_equal "$code" 130
  assert_equal "$(leftovers)" ""
  assert_equal "$(jq -r '[.ok, .result] | join(" ")' "$scratch/out")" "false failed"
}

@test "--report-failure notifies and prints the JSON of a deploy that never started" {
  run --separate-stderr script ssh-deploy --report-failure 'writing .env.production failed' --json
  assert_failure 1
  assert_equal "$(jq -r '[.ok, .result, .error] | join("|")' <<<"$output")" "false|failed|failed before the deploy started: writing .env.production failed"
}

@test "--restore-backup needs --yes without a terminal, and a backup file name" {
  run --separate-stderr script ssh-deploy "${dry[@]}" --restore-backup 20261127T145001Z-abc.dump
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: --restore-backup replaces the database of the live release with the backup; confirm with --yes (on a terminal you are asked)"
  run --separate-stderr script ssh-deploy "${dry[@]}" --restore-backup '../../etc/passwd' --yes
  assert_failure 2
  [[ "$stderr" == 'ssh-deploy: error: --restore-backup "../../etc/passwd" is not a backup file name'* ]]
  run --separate-stderr script ssh-deploy "${dry[@]}" --restore-backup 20261127T145001Z-abc.dump --rollback
  assert_failure 2
  assert_equal "$stderr" "ssh-deploy: error: --rollback and --restore-backup cannot be combined; pick one"
}
