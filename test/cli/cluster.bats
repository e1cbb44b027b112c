#!/usr/bin/env bats
load common

setup() {
  export CI=true
  unset SSH_HOST SSH_USER SSH_PORT SSH_KEY SSH_KEY_FILE SSH_KNOWN_HOSTS SSH_KNOWN_HOSTS_FILE
  # Servers that are never reached: every error below comes before any connection.
  server=(--host 127.0.0.1 --port 9 --user deploy --key "${BATS_TEST_TMPDIR}/no-such-key")
}

# stdout empty, exit 2, and stderr exactly "cluster: error: $message".
assert_usage_error() {
  local message="$1"
  assert_failure 2
  assert_output ""
  lines=("${stderr_lines[@]}")
  assert_one_line_error cluster
  assert_equal "$stderr" "cluster: error: ${message}"
}

@test "cluster --help describes the actions, the flags and the exit codes" {
  run --separate-stderr script cluster --help
  assert_success
  assert_equal "$stderr" ""
  assert_line --index 0 'Usage: npx tsx scripts/cluster.ts [options] init|join|status'
  assert_output --partial '  init    on --host: `docker swarm init`'
  assert_output --partial '--manager-host HOST'
  assert_output --partial '--label KEY=VALUE'
  assert_output --partial 'Exit codes: 0 ok, 1 failed, 2 bad input'
}

@test "aidd cluster --help names itself and the script it stands for; --version prints the toolkit version" {
  run --separate-stderr node "${ROOT}/bin/aidd.js" cluster --help </dev/null
  assert_success
  assert_line --index 0 'Usage: aidd cluster init|join|status [options]'
  assert_line --index 1 '   or: npx tsx scripts/cluster.ts init|join|status [options]'
  run --separate-stderr script cluster --version
  assert_success
  assert_output "aidd-devops $(jq -r '.version' "${ROOT}/package.json")"
}

@test "cluster names a missing or unknown action" {
  run --separate-stderr script cluster "${server[@]}"
  assert_usage_error 'no action given; the actions are init, join, status (see --help)'
  run --separate-stderr script cluster leave "${server[@]}"
  assert_usage_error 'unknown action "leave"; the actions are init, join, status (see --help)'
}

@test "cluster names each bad value by its flag before connecting" {
  run --separate-stderr script cluster init '--host=-oProxyCommand=touch /tmp/x' --user deploy
  assert_usage_error '--host "-oProxyCommand=touch /tmp/x" is not a host name or IP address'
  run --separate-stderr script cluster init --host 127.0.0.1 --user 'a;b'
  assert_usage_error '--user "a;b" is not a user name (letters, digits, _ . -, not starting with a digit or dash)'
  run --separate-stderr script cluster init "${server[@]}" --advertise-addr 'eth0;reboot'
  assert_usage_error '--advertise-addr "eth0;reboot" is not an IP address; pass the address the other servers reach this one on'
  run --separate-stderr script cluster init "${server[@]}" --label 'role=$(id)'
  assert_usage_error '--label "role=$(id)" is not KEY=VALUE (key: letters, digits, . _ - such as com.example.role; value: letters, digits, . _ : / @ + -)'
  run --separate-stderr script cluster join "${server[@]}" --manager-host 10.0.0.1 --manager-port 99999
  assert_usage_error '--manager-port "99999" is not a TCP port (1-65535)'
}

@test "cluster refuses flags of another action and join without a manager" {
  run --separate-stderr script cluster init "${server[@]}" --json
  assert_usage_error '--json does not go with init'
  run --separate-stderr script cluster status "${server[@]}" --label role=db
  assert_usage_error '--label does not go with status'
  run --separate-stderr script cluster join "${server[@]}"
  assert_usage_error 'join needs the manager: pass --manager-host HOST (a server where `aidd cluster init` ran)'
}

@test "cluster names an SSH key it cannot read" {
  run --separate-stderr script cluster status "${server[@]}"
  assert_usage_error "SSH key ${BATS_TEST_TMPDIR}/no-such-key cannot be read; pass --key PATH (or SSH_KEY with the key's content)"
}

@test "cluster join --dry-run prints every script, the token redacted, and connects nowhere" {
  local key="${BATS_TEST_TMPDIR}/key"
  ssh-keygen -q -t ed25519 -N '' -f "$key"
  touch "${BATS_TEST_TMPDIR}/known_hosts"
  # Port 9: nothing listens, so any connection would fail the run.
  run --separate-stderr script cluster join --dry-run --host 127.0.0.1 --port 9 --user deploy --key "$key" \
    --known-hosts "${BATS_TEST_TMPDIR}/known_hosts" --manager-host 127.0.0.2 --label zone=b
  assert_success
  assert_output ""
  [[ "$stderr" == *"[dry-run] \$ ssh "*"-p 9 deploy@127.0.0.1 'bash -s'"* ]] || fail "no worker script: $stderr"
  [[ "$stderr" == *"-p 9 deploy@127.0.0.2 'bash -s'"* ]] || fail "no manager script: $stderr"
  [[ "$stderr" == *'"JoinToken":"[REDACTED]"'* ]] || fail "no redacted join body: $stderr"
  [[ "$stderr" == *'--data-binary @- '*'http://localhost/swarm/join'* ]] || fail "no join request: $stderr"
  [[ "$stderr" == *'label_node NODE_ID zone=b'* ]] || fail "no labels: $stderr"
}
