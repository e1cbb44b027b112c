#!/usr/bin/env bats
load common

SUBCOMMAND_NAMES=(deploy rollback status history logs exec unlock smoke build env rehearse cluster)

# The `aidd` command as the package's bin runs it: node strips the types itself, stdin closed as in CI.
aidd() {
  node "${ROOT}/bin/aidd.js" "$@" </dev/null
}

setup() {
  # No walkthrough may start, and no server or app may come from the environment.
  export CI=true
  unset SSH_HOST SSH_USER SSH_PORT SSH_KEY SSH_KEY_FILE SSH_KNOWN_HOSTS SSH_KNOWN_HOSTS_FILE DEPLOY_PATH
  unset AIDD_COMPOSE_FILE COMPOSE_PROJECT_NAME AIDD_SERVER_ENV REGISTRY IMAGE_OWNER IMAGE_TAG AIDD_IMAGES_FILE
  VERSION="$(jq -r '.version' "${ROOT}/package.json")"
  # A server that is never reached: every error below comes before the key is read (and so before any connection).
  server=(--host 127.0.0.1 --user u --key "${BATS_TEST_TMPDIR}/no-such-key")
}

# stdout empty, exit 2, and stderr exactly one line: "$prefix: error: $message".
assert_usage_error() {
  local prefix="$1" message="$2"
  assert_failure 2
  assert_output ""
  lines=("${stderr_lines[@]}")
  assert_one_line_error "${prefix}"
  assert_equal "$stderr" "${prefix}: error: ${message}"
}

@test "aidd, aidd --help and aidd help list every subcommand and exit 0" {
  for args in "" "--help" "help" "-h"; do
    # shellcheck disable=SC2086 # "" stands for no argument at all
    run --separate-stderr aidd $args
    assert_success
    assert_equal "$stderr" ""
    assert_line --index 0 'Usage: aidd COMMAND [options]'
    for name in "${SUBCOMMAND_NAMES[@]}"; do
      assert_line --regexp "^  ${name} "
    done
  done
}

@test "aidd --version and aidd version print the package.json version" {
  for args in --version version; do
    run --separate-stderr aidd "$args"
    assert_success
    assert_output "aidd-devops ${VERSION}"
    assert_equal "$stderr" ""
  done
}

@test "every script's --version through tsx prints the same version as aidd" {
  for name in aidd ssh-deploy build-push smoke-test setup-env rehearse; do
    run --separate-stderr script "$name" --version
    assert_success
    assert_output "aidd-devops ${VERSION}"
    assert_equal "$stderr" ""
  done
}

@test "aidd deploy --version prints the toolkit version" {
  run --separate-stderr aidd deploy --version
  assert_success
  assert_output "aidd-devops ${VERSION}"
  assert_equal "$stderr" ""
}

@test "each ssh-deploy subcommand's --help names itself, the script command it stands for, and ssh-deploy's options" {
  local -A forms=(
    [deploy]='deploy [options]|[options]'
    [rollback]='rollback [ID] [options]|--rollback [--to ID] [options]'
    [status]='status [options]|--status [options]'
    [history]='history [options]|--history [options]'
    [logs]='logs [-f] [--since 10m] [--tail N] [options] [SERVICE...]|--logs [-f] [--since 10m] [--tail N] [options] [SERVICE...]'
    [unlock]='unlock [options]|--break-lock [options]'
  )
  for name in "${!forms[@]}"; do
    run --separate-stderr aidd "$name" --help
    assert_success
    assert_equal "$stderr" ""
    assert_line --index 0 "Usage: aidd ${forms[$name]%%|*}"
    assert_line --index 1 "   or: npx tsx scripts/ssh-deploy.ts ${forms[$name]#*|}"
    assert_line --regexp '^  -f, --follow +With --logs: keep printing new lines until Ctrl-C\.$'
    assert_line --regexp '^      --logs +Print the live release'
    assert_line --regexp '^      --since WHEN +With --logs: only lines since'
    assert_line --regexp '^      --tail N +With --logs: the last N lines'
    assert_line --regexp '^      --exec SERVICE +Run the command after -- in the service'
  done
  run --separate-stderr aidd status --help
  assert_line --index 2 "The live release: each service's image, state and health; the proxy; the lock."
}

@test "aidd exec --help, with or without a service, shows the exec usage" {
  for args in "exec api --help" "exec --help"; do
    run --separate-stderr aidd $args
    assert_success
    assert_equal "$stderr" ""
    assert_line --index 0 'Usage: aidd exec SERVICE [options] -- COMMAND...'
    assert_line --index 1 '   or: npx tsx scripts/ssh-deploy.ts --exec SERVICE [options] -- COMMAND...'
  done
}

@test "aidd smoke, build, env and rehearse --help name themselves and their own script" {
  local -A scripts=([smoke]=smoke-test [build]=build-push [env]=setup-env [rehearse]=rehearse)
  for name in "${!scripts[@]}"; do
    run --separate-stderr aidd "$name" --help
    assert_success
    assert_equal "$stderr" ""
    assert_line --index 0 "Usage: aidd $name [options]"
    assert_line --index 1 "   or: npx tsx scripts/${scripts[$name]}.ts [options]"
    assert_output --partial 'Exit codes: 0 ok, 1 failed, 2 bad input'
  done
}

@test "a script run on its own keeps its script usage line" {
  run --separate-stderr npx tsx scripts/ssh-deploy.ts --help
  assert_success
  assert_line --index 0 'Usage: npx tsx scripts/ssh-deploy.ts [options] [SERVICE... with --logs | -- COMMAND... with --exec]'
}

@test "aidd frob names the unknown command and lists the commands" {
  run --separate-stderr aidd frob
  assert_usage_error aidd 'unknown command "frob"; the commands are deploy, rollback, status, history, logs, exec, unlock, smoke, build, env, rehearse, cluster (aidd --help)'
}

@test "aidd exec without a service says a service comes first" {
  run --separate-stderr aidd exec
  assert_usage_error aidd 'aidd exec needs a service first: aidd exec SERVICE [options] -- COMMAND...'
}

@test "aidd exec with an unknown service names --exec and the compose file's services" {
  run --separate-stderr aidd exec nosuch "${server[@]}" -- sh
  assert_usage_error ssh-deploy '--exec: "nosuch" is not a service of the compose file; its services are postgres, api, bot, frontend'
}

@test "aidd logs with an unknown service names --logs" {
  run --separate-stderr aidd logs "${server[@]}" nosuch
  assert_usage_error ssh-deploy '--logs: "nosuch" is not a service of the compose file; its services are postgres, api, bot, frontend'
}

@test "aidd logs --since with a word that is no duration or date names --since" {
  run --separate-stderr aidd logs "${server[@]}" --since yesterday
  assert_usage_error ssh-deploy '--since "yesterday" is not a duration like 10m or 1h30m, or a date like 2026-11-28T10:00:00Z'
}

@test "aidd logs --tail with a bad count names --tail" {
  run --separate-stderr aidd logs "${server[@]}" --tail 10x
  assert_usage_error ssh-deploy '--tail "10x" is not a number of lines or "all"'
}

@test "aidd status with a stray word names it" {
  run --separate-stderr aidd status "${server[@]}" extra
  assert_usage_error ssh-deploy 'unexpected "extra": words after the flags go only with --logs (services) or --exec (the command)'
}

@test "aidd deploy --follow says --follow only goes with --logs" {
  run --separate-stderr aidd deploy "${server[@]}" --follow
  assert_usage_error ssh-deploy '--follow only goes with --logs'
}

@test "aidd rollback with a malformed release id names --to" {
  run --separate-stderr aidd rollback 'bad id!' "${server[@]}"
  assert_usage_error ssh-deploy '--to "bad id!" is not a release id, as --history lists them (letters, digits, _ . -)'
}

@test "an older Node.js is refused in one line" {
  local old=/usr/bin/node
  [[ -x "$old" ]] || skip "no $old on this machine to run as an older Node.js"
  local version
  version="$("$old" -p 'process.versions.node')"
  local major="${version%%.*}" rest="${version#*.}"
  local minor="${rest%%.*}"
  if (( major > 22 || (major == 22 && minor >= 18) )); then
    skip "$old is Node.js $version, not older than 22.18; no older Node.js on this machine"
  fi
  run --separate-stderr "$old" "${ROOT}/bin/aidd.js" status </dev/null
  assert_failure 1
  assert_output ""
  lines=("${stderr_lines[@]}")
  assert_one_line_error aidd
  assert_line --index 0 --partial "aidd: error: Node.js 22.18 or newer is needed, this is ${version}; "
  [[ "$stderr" == "aidd: error: Node.js 22.18 or newer is needed, this is "* ]]
}

@test "npm exec aidd runs the package's bin in the repository" {
  cd "$ROOT"
  run --separate-stderr npm exec --offline aidd -- --version </dev/null
  assert_success
  assert_output "aidd-devops ${VERSION}"
}

@test "installed into another project with npm, npx aidd runs there, on that project's app" {
  local project="${BATS_TEST_TMPDIR}/project"
  mkdir -p "${project}"
  (cd "$ROOT" && npm pack --silent --pack-destination "${BATS_TEST_TMPDIR}" >/dev/null)
  cd "${project}"
  printf '{"name": "an-app", "version": "1.0.0", "private": true}\n' >package.json
  # The packages come from npm's cache, filled by the npm ci that installed the toolkit's own.
  run npm install --no-audit --no-fund --prefer-offline "${BATS_TEST_TMPDIR}/aidd-devops-${VERSION}.tgz"
  assert_success
  run --separate-stderr npx --no-install aidd --version </dev/null
  assert_success
  assert_output "aidd-devops ${VERSION}"
  # A dry run of a deploy of the project's own app prints the plan for its images and connects nowhere.
  cp -r "${ROOT}/examples/hello-compose" app
  touch known_hosts
  run --separate-stderr npx --no-install aidd deploy --dry-run --compose app/docker-compose.yml --host 127.0.0.1 --user deploy \
    --owner acme --key "${project}/package.json" --known-hosts known_hosts </dev/null
  assert_success
  [[ "$stderr" == *"ghcr.io/acme/hello-web:latest"* ]] || fail "no plan for the app's images: $stderr"
}
