#!/usr/bin/env bats
load common

@test "smoke-test --help describes the flags and exit codes" {
  run script smoke-test --help
  assert_success
  assert_output --partial 'Usage: npx tsx scripts/smoke-test.ts'
  assert_output --partial '--url SERVICE=URL'
  assert_output --partial 'Exit codes: 0 ok'
}

@test "smoke-test rejects an unknown flag with one line and exit 2" {
  run --separate-stderr script smoke-test --bogus
  assert_failure 2
  lines=("${stderr_lines[@]}")
  assert_one_line_error smoke-test
  assert_equal "$output" ""
}

@test "smoke-test names a malformed --url and exits 2" {
  run --separate-stderr script smoke-test --url api
  assert_failure 2
  assert_equal "$stderr" "smoke-test: error: --url api is not SERVICE=http(s)://host[:port]; e.g. --url api=https://api.example.com"
}

@test "smoke-test names a bad --timeout" {
  run --separate-stderr script smoke-test --timeout soon
  assert_failure 2
  assert_equal "$stderr" "smoke-test: error: --timeout soon is not a positive number of seconds"
}

@test "smoke-test names a compose file it cannot read" {
  run --separate-stderr script smoke-test --compose /nonexistent/docker-compose.yml
  assert_failure 2
  assert_equal "$stderr" "smoke-test: error: compose file /nonexistent/docker-compose.yml cannot be read; pass --compose PATH to your docker-compose.yml"
}

@test "smoke-test by URL fails fast, naming the failed checks, when nothing listens" {
  run --separate-stderr script smoke-test --url api=http://127.0.0.1:9 --timeout 1 --json
  assert_failure 1
  assert_equal "$(jq -r '.ok' <<<"$output")" "false"
  assert_equal "$(jq -r '[.checks[].name] | join(",")' <<<"$output")" "api health,api stats"
  assert_equal "$stderr" "smoke-test: error: failed: api health, api stats"
}
