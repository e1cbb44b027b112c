#!/usr/bin/env bats
# The setup-env walkthrough on a real terminal: tmux gives the script a pseudo-terminal, the test
# types into it with send-keys and reads the screen with capture-pane.
load setup-env
load terminal

setup() {
  command -v tmux >/dev/null || fail 'tmux is needed for the walkthrough tests (apt-get install tmux)'
  WORK="${BATS_TEST_TMPDIR}/work"
  mkdir -p "${WORK}"
  cd "${WORK}"
  # A private tmux server, so the tests never touch a user's sessions.
  TMUX_SOCKET="${BATS_TEST_TMPDIR}/tmux.sock"
}

teardown() {
  if [[ -S "${TMUX_SOCKET}" ]]; then
    screen >"${BATS_TEST_TMPDIR}/screen.txt" 2>/dev/null || true
    leak_log "${BATS_TEST_TMPDIR}/screen.txt"
    tmux -S "${TMUX_SOCKET}" kill-server 2>/dev/null || true
  fi
  leak_keep_env_files "${WORK}"
}

# Starts setup-env with ARGS in a 120x60 terminal, outside CI; the pane stays open after it exits.
start_walkthrough() {
  local command
  printf -v command '%q ' env -u CI TERM=xterm-256color "${TSX}" "${ROOT}/scripts/setup-env.ts" "$@"
  tmux -S "${TMUX_SOCKET}" new-session -d -x 120 -y 60 -c "${WORK}" "${command}; echo \"[exit \$?]\"; sleep 600"
}

keys() {
  tmux -S "${TMUX_SOCKET}" send-keys -t 0 "$@"
}

type_text() {
  tmux -S "${TMUX_SOCKET}" send-keys -t 0 -l -- "$1"
}

@test "the production walkthrough asks for what is missing, masks secrets, checks input and writes a 0600 file" {
  start_walkthrough --target production
  wait_for 'POSTGRES_PASSWORD: generate a strong random value?'
  keys Enter
  wait_for '◆  BOT_TOKEN'
  type_text "${KNOWN_TOKEN}"
  keys Enter
  wait_for '◆  IMAGE_OWNER'
  type_text 'Acme'
  keys Enter
  wait_for 'not a lowercase registry namespace'
  keys BSpace BSpace BSpace BSpace
  type_text 'acme'
  keys Enter
  wait_for 'Write .env.production?'
  run screen
  assert_output --partial '+ BOT_TOKEN              ********'
  assert_output --partial '+ IMAGE_OWNER            acme'
  refute_output --partial "${KNOWN_TOKEN}"
  keys Enter
  wait_for '[exit 0]'
  run screen
  assert_output --partial 'wrote .env.production (mode 0600, 13 change(s))'
  assert_equal "$(file_mode .env.production)" 600
  BOT_TOKEN="${KNOWN_TOKEN}" dotenv_equals .env.production BOT_TOKEN BOT_TOKEN
  assert_equal "$(dotenv_value .env.production IMAGE_OWNER)" acme
  run setup_env --target production --check
  assert_success
}

@test "Ctrl-C at a prompt exits 130 and writes nothing" {
  start_walkthrough --target production
  wait_for 'POSTGRES_PASSWORD: generate a strong random value?'
  keys C-c
  wait_for '[exit 130]'
  run screen
  assert_output --partial 'Cancelled: nothing was written.'
  assert [ ! -e .env.production ]
}

@test "on a complete file the walkthrough asks nothing and changes nothing" {
  POSTGRES_PASSWORD="${KNOWN_PASSWORD}" BOT_TOKEN="${KNOWN_TOKEN}" setup_env --target production --set IMAGE_OWNER=acme >/dev/null 2>&1
  cp -p .env.production before
  start_walkthrough --target production
  wait_for '[exit 0]'
  run screen
  assert_output --partial '.env.production is complete for production: nothing to change'
  refute_output --partial '◆'
  cmp .env.production before
  run ls -A
  refute_output --partial '.bak-'
}

@test "on an existing file the walkthrough asks only for the invalid value, then backs the file up" {
  printf '%s\n' '# my local settings' 'POSTGRES_PASSWORD=local-password-1' 'BOT_MODE=offline' 'API_PORT=99999' >.env
  chmod 600 .env
  cp .env before
  start_walkthrough --file .env
  wait_for '◆  API_PORT'
  run screen
  assert_output --partial 'API_PORT: not a TCP port (1-65535)'
  keys BSpace BSpace BSpace BSpace BSpace
  type_text '8090'
  keys Enter
  wait_for 'Write .env (the current file is backed up first)?'
  run screen
  assert_output --partial '~ API_PORT'
  refute_output --partial '◆  POSTGRES_PASSWORD'
  keys Enter
  wait_for '[exit 0]'
  backups=(.env.bak-*)
  assert_equal "${#backups[@]}" 1
  cmp "${backups[0]}" before
  assert_equal "$(cat .env)" "$(printf '%s\n' '# my local settings' 'POSTGRES_PASSWORD=local-password-1' 'BOT_MODE=offline' 'API_PORT=8090')"
}
