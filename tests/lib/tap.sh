# tap.sh - TAP results for the shell tests (tools/tests, tests/serve):
# sourced by their lib.sh.  Each check is one "ok"/"not ok" line that
# meson counts; tap_plan prints the plan and says whether all passed.
n=0
failed=0

ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}

not_ok() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1"
}

skip() {
	n=$((n + 1))
	echo "ok $n # SKIP $1"
}

# check DESCRIPTION COMMAND...: one TAP line saying whether COMMAND passed.
# What COMMAND prints (its "# ..." diagnostics) goes to stdout as before
# and, when it failed, to stderr too: meson's --print-errorlogs shows a
# TAP test's stderr only, and a failure seen once in CI should say why.
check() {
	local what=$1 out=${TMPDIR:-/tmp}/tap-$$-$n

	shift
	if "$@" >"$out"; then
		cat "$out"
		ok "$what"
	else
		cat "$out"
		{
			echo "# not ok $((n + 1)) - $what"
			cat "$out"
		} >&2
		not_ok "$what"
	fi
	rm -f "$out"
}

tap_plan() {
	echo "1..$n"
	[[ $failed -eq 0 ]]
}
