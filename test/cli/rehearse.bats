#!/usr/bin/env bats
load common

@test "rehearse --help describes what it does" {
  run script rehearse --help
  assert_success
  assert_output --partial 'Usage: npx tsx scripts/rehearse.ts'
  assert_output --partial '--dry-run'
}

@test "rehearse rejects an unknown flag with one line and exit 2" {
  run --separate-stderr script rehearse --yes
  assert_failure 2
  lines=("${stderr_lines[@]}")
  assert_one_line_error rehearse
}
