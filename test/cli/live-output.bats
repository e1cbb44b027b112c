#!/usr/bin/env bats
# build-push's live output (lib/core/live-output.ts) on a real terminal: tmux gives the build a
# pseudo-terminal, the test reads the screen with capture-pane and every byte written to it with pipe-pane.
# The app is a copy of examples/hello-compose (two busybox images; the offline stand-in base is cached
# here), built with --no-push for registry 127.0.0.1:1, so nothing ever leaves loopback.
load common
load terminal

setup() {
  command -v tmux >/dev/null || fail 'tmux is needed for the live-output tests (apt-get install tmux)'
  command -v docker >/dev/null || fail 'docker is needed for the live-output tests'
  # CI variables of the machine running the tests must not leak into these cases.
  unset IMAGE_OWNER GITHUB_REPOSITORY_OWNER REGISTRY REGISTRY_USER GITHUB_ACTOR GITHUB_REF GITHUB_OUTPUT GITHUB_ACTIONS
  unset REGISTRY_TOKEN GHCR_TOKEN GITHUB_TOKEN AIDD_COMPOSE_FILE AIDD_BUILD_PARALLEL GITHUB_STEP_SUMMARY
  app="${BATS_TEST_TMPDIR}/app"
  docker_config="${BATS_TEST_TMPDIR}/docker-config"
  # Where a failed build's whole output is saved (os.tmpdir()): inside this test's own directory.
  private_tmp="${BATS_TEST_TMPDIR}/tmp"
  mkdir -p "${docker_config}" "${private_tmp}"
  # A private tmux server and a session named after the test, so the tests never touch a user's sessions.
  TMUX_SOCKET="${BATS_TEST_TMPDIR}/tmux.sock"
  SESSION="live-output-${BATS_TEST_NUMBER}"
  TMUX_TARGET="${SESSION}"
  # A build may take a while on a cold cache.
  WAIT_SECONDS=120
  RAW="${BATS_TEST_TMPDIR}/raw.txt"
}

teardown() {
  if [[ -S "${TMUX_SOCKET}" ]]; then
    # The last screen, kept for a look with bats --no-tempdir-cleanup.
    screen >"${BATS_TEST_TMPDIR}/screen.txt" 2>/dev/null || true
    tmux -S "${TMUX_SOCKET}" kill-session -t "${SESSION}" 2>/dev/null || true
    tmux -S "${TMUX_SOCKET}" kill-server 2>/dev/null || true
  fi
  # The images these tests built: every tag under 127.0.0.1:1/livetest/.
  local images
  images="$(docker image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep '^127\.0\.0\.1:1/livetest/' || true)"
  if [[ -n "${images}" ]]; then
    # shellcheck disable=SC2086
    docker image rm ${images} >/dev/null 2>&1 || true
  fi
}

# A committed copy of hello-compose: build-push tags images with the commit of the compose dir.
# With "failing", web builds Dockerfile.web, the shared Dockerfile plus a step that prints a marker and
# exits 3; worker still builds the shared Dockerfile.
committed_app() {
  cp -r "${ROOT}/examples/hello-compose" "${app}"
  if [[ "${1:-}" == failing ]]; then
    { cat "${app}/Dockerfile"; echo 'RUN echo live-output-failure-marker && exit 3'; } >"${app}/Dockerfile.web"
    sed -i 's/^  web:$/&\n    build: {context: ., dockerfile: Dockerfile.web}/' "${app}/docker-compose.yml"
    grep -qF 'dockerfile: Dockerfile.web' "${app}/docker-compose.yml" || fail 'could not point web at Dockerfile.web'
  fi
  git -C "${app}" init --quiet
  git -C "${app}" add --all
  git -C "${app}" -c user.name=test -c user.email=test@example.com commit --quiet --message init
}

# The build command, then EXIT=<its exit code>; ENV_SETUP runs first in the same shell.
build_command() {
  local env_setup="$1" command
  printf -v command '%s; export DOCKER_CONFIG=%q TMPDIR=%q; node %q build --compose %q --registry 127.0.0.1:1 --owner livetest --no-push; echo "EXIT=$?"' \
    "${env_setup}" "${docker_config}" "${private_tmp}" "${ROOT}/bin/aidd.js" "${app}/docker-compose.yml"
  printf '%s' "${command}"
}

# Runs COMMAND in a fresh 120x60 tmux pane; every byte the pane receives is copied to RAW. The pane
# waits for the copy to be set up before it starts, and stays open after the command exits.
start_in_pane() {
  local go="${BATS_TEST_TMPDIR}/go"
  tmux -S "${TMUX_SOCKET}" new-session -d -s "${SESSION}" -x 120 -y 60 -c "${BATS_TEST_TMPDIR}" \
    "until [ -e '${go}' ]; do sleep 0.05; done; $1; sleep 600"
  tmux -S "${TMUX_SOCKET}" pipe-pane -t "${SESSION}" "cat >>'${RAW}'"
  touch "${go}"
}

start_build() {
  start_in_pane "$(build_command "$1")"
}

# The exit code the pane printed.
pane_exit() {
  screen | sed -n 's/^EXIT=\([0-9]*\)$/\1/p' | tail -n 1
}

@test "on a terminal each build folds into live lines and ends as one ✓ line" {
  committed_app
  start_build 'unset CI NO_COLOR'
  wait_for 'EXIT='
  run screen
  assert_line 'EXIT=0'
  assert_line --regexp '^✓ building web \([0-9]+\.[0-9] s\)$'
  assert_line --regexp '^✓ building worker \([0-9]+\.[0-9] s\)$'
  # The summary table, on stdout, after the live lines.
  assert_line --regexp '^service +tags +digest +size +seconds +cache +push$'
  assert_line --regexp '^web +[0-9a-f]{12}, latest '
  assert_line --regexp '^worker +[0-9a-f]{12}, latest '
  assert_output --partial '==> Building web, worker (2 at a time)'
  # The build output was folded away: none of BuildKit's lines is left on the screen.
  refute_output --partial '#1 [internal]'
  refute_output --partial '  | #'
  refute_output --partial '⠋'
  # It was there while the builds ran: the titles with their elapsed seconds, BuildKit's lines
  # under them (dimmed), then erased in place (cursor up to the first live line, erase to the end).
  run cat "${RAW}"
  assert_output --regexp '[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] building web \([0-9]+ s\)'
  assert_output --regexp '[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] building worker \([0-9]+ s\)'
  assert_output --partial $'\x1b[2m  | #'
  assert_output --regexp $'\x1b\\[[0-9]+F\x1b\\[J'
}

@test "on a terminal a failed build shows its last lines and saves its whole output in a private file" {
  committed_app failing
  start_build 'unset CI NO_COLOR'
  wait_for 'EXIT='
  run screen
  refute_line 'EXIT=0'
  assert [ "$(pane_exit)" -ne 0 ]
  assert_line --regexp '^✗ building web \([0-9]+\.[0-9] s\)$'
  assert_line --regexp '^✓ building worker \([0-9]+\.[0-9] s\)$'
  # The failure's last lines, the marker among them.
  assert_line --regexp '^  \| .*live-output-failure-marker'
  assert_output --partial 'build-push: error: build of web failed'
  local pipe_lines tail_lines
  pipe_lines="$(screen | grep -c '^  | ')"
  # 30 lines at most of web's output; worker's lines were folded away.
  assert [ "${pipe_lines}" -ge 2 ]
  assert [ "${pipe_lines}" -le 30 ]
  assert_line --regexp '^  full output: /'
  local saved
  saved="$(screen | sed -n 's/^  full output: //p')"
  assert_equal "$(grep -c . <<<"${saved}")" 1
  # Under TMPDIR, in a directory of its own: the file 0600, the directory 0700.
  assert [ -f "${saved}" ]
  [[ "${saved}" == "${private_tmp}/aidd-output-"*/output.log ]] || fail "saved outside TMPDIR: ${saved}"
  assert_equal "$(stat -c %a "${saved}")" 600
  assert_equal "$(stat -c %a "$(dirname "${saved}")")" 700
  grep -qF 'live-output-failure-marker' "${saved}" || fail "the saved output has no marker: $(cat "${saved}")"
  # The screen shows the file's last lines (non-empty ones, the same 30 at most).
  tail_lines="$(grep -v '^[[:space:]]*$' "${saved}" | tail -n 30 | sed 's/^/  | /')"
  run screen
  assert_output --partial "${tail_lines}"
}

@test "without a terminal nothing is drawn: build output is logged line by line" {
  committed_app
  local err="${BATS_TEST_TMPDIR}/stderr.txt"
  (
    unset CI NO_COLOR
    export DOCKER_CONFIG="${docker_config}" TMPDIR="${private_tmp}"
    node "${ROOT}/bin/aidd.js" build --compose "${app}/docker-compose.yml" --registry 127.0.0.1:1 --owner livetest --no-push \
      </dev/null >"${BATS_TEST_TMPDIR}/stdout.txt" 2>"${err}"
  ) || fail "build-push failed: $(cat "${err}")"
  assert_equal "$(grep -c $'\x1b' "${err}")" 0
  run cat "${err}"
  assert_line '==> Building web, worker (2 at a time)'
  refute_output --partial '✓'
  refute_output --partial '✗'
  refute_output --partial 'building web ('
  assert_line --regexp '^    web: built in [0-9.]+s'
  assert_equal "$(grep -c $'\x1b' "${BATS_TEST_TMPDIR}/stdout.txt")" 0
}

@test "with NO_COLOR a terminal gets no live output and no escape sequences" {
  committed_app
  start_build 'unset CI; export NO_COLOR=1'
  wait_for 'EXIT='
  run screen -e
  assert_line 'EXIT=0'
  refute_output --partial '✓ building'
  refute_output --partial $'\x1b'
  assert_line '==> Building web, worker (2 at a time)'
  assert_line --regexp '^    web: built in [0-9.]+s'
  # Nothing was drawn and erased either: no escape sequence in any byte the pane received.
  assert_equal "$(grep -c $'\x1b' "${RAW}")" 0
  run cat "${RAW}"
  refute_output --partial 'building web ('
}

@test "on a terminal ssh-deploy's own steps are live lines that end as one ✓ or ✗ line with their time" {
  # A server whose host key is known but where nothing listens: the connect step fails at once.
  local port key="${BATS_TEST_TMPDIR}/client_key" host_key="${BATS_TEST_TMPDIR}/host_key" command
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  ssh-keygen -q -t ed25519 -N '' -f "${key}"
  ssh-keygen -q -t ed25519 -N '' -f "${host_key}"
  echo "[127.0.0.1]:${port} $(cut -d' ' -f1,2 "${host_key}.pub")" >"${BATS_TEST_TMPDIR}/known_hosts"
  printf -v command 'unset CI NO_COLOR; node %q rollback --host 127.0.0.1 --port %q --user aidd-nobody --key %q --known-hosts %q; echo "EXIT=$?"' \
    "${ROOT}/bin/aidd.js" "${port}" "${key}" "${BATS_TEST_TMPDIR}/known_hosts"
  start_in_pane "${command}"
  wait_for 'EXIT='
  run screen
  assert_line --regexp "^✗ Connecting to aidd-nobody@127\\.0\\.0\\.1:${port} \\([0-9]+\\.[0-9] s\\)$"
  assert_output --partial 'ssh-deploy: error: '
  refute_line 'EXIT=0'
  # No output of its own to show: no "full output" file for a step of the tool itself.
  refute_output --partial 'full output:'
  # While it ran, the same step was a spinner line.
  run cat "${RAW}"
  assert_output --regexp "[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] Connecting to aidd-nobody@127\\.0\\.0\\.1:${port} \\([0-9]+ s\\)"
}
