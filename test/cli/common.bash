# Shared set-up for the command-line tests: assertions from node_modules, scripts run through tsx.
bats_require_minimum_version 1.5.0
ROOT="$(cd "$(dirname "${BATS_TEST_FILENAME}")/../.." && pwd)"
load "${ROOT}/node_modules/bats-support/load"
load "${ROOT}/node_modules/bats-assert/load"

TSX="${ROOT}/node_modules/.bin/tsx"

# Runs a toolkit script with stdin closed, as CI does.
script() {
  local name="$1"
  shift
  "${TSX}" "${ROOT}/scripts/${name}.ts" "$@" </dev/null
}

# An error is one line on stderr that starts with the script's name.
assert_one_line_error() {
  local name="$1"
  assert_equal "${#lines[@]}" 1
  assert_line --index 0 --regexp "^${name}: error: "
}
