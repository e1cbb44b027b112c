#!/usr/bin/env bats
load common

setup() {
  # CI variables of the machine running the tests must not leak into these cases.
  unset IMAGE_OWNER GITHUB_REPOSITORY_OWNER REGISTRY REGISTRY_USER GITHUB_ACTOR GITHUB_REF GITHUB_OUTPUT
  unset REGISTRY_TOKEN GHCR_TOKEN GITHUB_TOKEN AIDD_COMPOSE_FILE AIDD_BUILD_PARALLEL
  export DOCKER_CONFIG="${BATS_TEST_TMPDIR}/docker-config"
}

# A committed copy of the reference stack: build-push tags images with the commit of the compose dir.
committed_stack() {
  local dir="${BATS_TEST_TMPDIR}/app"
  cp -r "${ROOT}/examples/aidd-bot" "${dir}"
  git -C "${dir}" init --quiet
  git -C "${dir}" add --all
  git -C "${dir}" -c user.name=test -c user.email=test@example.com commit --quiet --message init
  echo "${dir}/docker-compose.yml"
}

@test "build-push --help describes the flags, the token variables and exit codes" {
  run script build-push --help
  assert_success
  assert_output --partial 'Usage: npx tsx scripts/build-push.ts'
  assert_output --partial '--service NAME'
  assert_output --partial '--no-push'
  assert_output --partial '[env IMAGE_OWNER]'
  assert_output --partial 'REGISTRY_TOKEN, GHCR_TOKEN, GITHUB_TOKEN'
  assert_output --partial 'Exit codes: 0 ok'
}

@test "build-push rejects an unknown flag with one line and exit 2" {
  run --separate-stderr script build-push --password hunter2
  assert_failure 2
  lines=("${stderr_lines[@]}")
  assert_one_line_error build-push
  assert_equal "$output" ""
}

@test "build-push names the missing owner" {
  run --separate-stderr script build-push --no-push
  assert_failure 2
  assert_equal "$stderr" "build-push: error: no image owner: pass --owner NAME or set IMAGE_OWNER (e.g. your GitHub user or organization)"
}

@test "build-push refuses to push without a token, naming the variables" {
  run --separate-stderr script build-push --owner acme
  assert_failure 2
  assert_equal "$stderr" "build-push: error: pushing to ghcr.io needs a password: set REGISTRY_TOKEN (or GHCR_TOKEN / GITHUB_TOKEN), or pass --no-push"
}

@test "build-push needs a user when it has a token" {
  REGISTRY_TOKEN=some-token run --separate-stderr script build-push --owner acme
  assert_failure 2
  assert_equal "$stderr" "build-push: error: no registry user for ghcr.io: pass --username NAME or set REGISTRY_USER"
}

@test "build-push names a bad --parallel, --version-tag and --service" {
  run --separate-stderr script build-push --owner acme --no-push --parallel 0
  assert_failure 2
  assert_equal "$stderr" "build-push: error: --parallel 0 is not a positive whole number; e.g. --parallel 2"

  run --separate-stderr script build-push --owner acme --no-push --version-tag next
  assert_failure 2
  assert_equal "$stderr" "build-push: error: --version-tag next is not a semantic version; use e.g. --version-tag 1.2.3 or v1.2.3"

  run --separate-stderr script build-push --owner acme --no-push --service postgres
  assert_failure 2
  lines=("${stderr_lines[@]}")
  assert_one_line_error build-push
  assert_line --index 0 --partial "--service postgres: "
  assert_line --index 0 --partial "buildable services: api, bot, frontend"
}

@test "build-push refuses a compose file outside a committed git repository" {
  cp -r "${ROOT}/examples/aidd-bot" "${BATS_TEST_TMPDIR}/loose"
  run --separate-stderr script build-push --owner acme --no-push --compose "${BATS_TEST_TMPDIR}/loose/docker-compose.yml"
  assert_failure 2
  assert_equal "$stderr" "build-push: error: ${BATS_TEST_TMPDIR}/loose is not in a git repository with a commit; images are tagged with the commit sha, so commit first (git add -A && git commit)"
}

@test "build-push --dry-run plans lowercased, sha-tagged builds and pushes without running them or printing the token" {
  compose="$(committed_stack)"
  sha="$(git -C "$(dirname "${compose}")" rev-parse HEAD)"
  export REGISTRY_TOKEN=dry-run-token-5678 REGISTRY_USER=me
  run --separate-stderr script build-push --compose "${compose}" --owner Acme-Org --registry 127.0.0.1:9 --service frontend --dry-run --json
  assert_success
  assert_equal "$(jq -r '.ok, .owner, .revision, .dirty' <<<"$output" | paste -sd' ')" "true acme-org ${sha} false"
  assert_equal "$(jq -r '.images[0] | [.repository, (.tags | join(",")), (.digest | tostring), .pushed] | join(" ")' <<<"$output")" \
    "127.0.0.1:9/acme-org/aidd-frontend ${sha},latest null false"
  [[ "$output" != *"dry-run-token-5678"* ]]

  run --separate-stderr script build-push --compose "${compose}" --owner Acme-Org --registry 127.0.0.1:9 --service frontend --dry-run --verbose
  assert_success
  [[ "$stderr" == *"[dry-run] \$ docker login 127.0.0.1:9 --username me --password-stdin <<< [REDACTED]"* ]]
  [[ "$stderr" == *"[dry-run] \$ docker push 127.0.0.1:9/acme-org/aidd-frontend:${sha}"* ]]
  [[ "$stderr" == *"--label org.opencontainers.image.revision=${sha}"* ]]
  [[ "$output$stderr" != *"dry-run-token-5678"* ]]
  run docker image inspect "127.0.0.1:9/acme-org/aidd-frontend:${sha}"
  assert_failure
}

@test "build-push --dry-run on uncommitted changes tags <sha>-dirty and never latest" {
  compose="$(committed_stack)"
  sha="$(git -C "$(dirname "${compose}")" rev-parse HEAD)"
  echo "// local change" >>"$(dirname "${compose}")/frontend/app/page.tsx"
  run --separate-stderr script build-push --compose "${compose}" --owner acme --service frontend --no-push --dry-run --json
  assert_success
  assert_equal "$(jq -r '.dirty, (.images[0].tags | join(","))' <<<"$output" | paste -sd' ')" "true ${sha}-dirty"

  run --separate-stderr script build-push --compose "${compose}" --owner acme --service frontend --no-push --dry-run
  assert_success
  [[ "$output" != *latest* ]]
  [[ "$stderr" == *"uncommitted changes: tagging :${sha}-dirty only, never :latest"* ]]
}

@test "build-push and ssh-deploy refuse a compose file that compose itself rejects, in one line, before anything runs" {
  local bad="${ROOT}/test/fixtures/compose/bad/service-not-mapping.yml"
  REGISTRY_TOKEN=t0ken-for-nothing run --separate-stderr script build-push --compose "${bad}" --owner acme --username me
  assert_failure 2
  assert_regex "$stderr" '^build-push: error: compose file .*/service-not-mapping\.yml: services\.app must be a mapping$'
  assert_equal "$(grep -c . <<<"$stderr")" 1
  assert_equal "$output" ''
  run --separate-stderr script ssh-deploy --compose "${bad}" --host 127.0.0.1 --user deploy --owner acme
  assert_failure 2
  assert_regex "$stderr" '^ssh-deploy: error: compose file .*/service-not-mapping\.yml: services\.app must be a mapping$'
  assert_equal "$(grep -c . <<<"$stderr")" 1
}
