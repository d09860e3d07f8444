#!/bin/bash
# dmio's command line: help and version, and every usage error answered
# with exit status 2, one line on stderr, nothing on stdout, and nothing
# created.
. "$(dirname "$0")/lib.sh"

random_file "$T/src" 64K
mkdir "$T/w"

# ---- help and version ----
for help in --help -h help; do
	run $help
	check "dmio $help exits 0" status 0
	check "dmio $help lists the commands" has "^Usage: dmio COMMAND" "$T/out"
done
for cmd in copy zero verify info demo serve bench; do
	run "$cmd" --help
	check "dmio $cmd --help exits 0" status 0
	check "dmio $cmd --help shows its usage" has "^Usage: dmio $cmd " "$T/out"
	run help "$cmd"
	check "dmio help $cmd shows the same" has "^Usage: dmio $cmd " "$T/out"
done
# Each command's help comes from its option table: every option it lists
# is one the command accepts (an unknown one would exit 2 before -h), and
# dmio(1) describes it.
# The man page as plain text: no font changes, no escaped hyphens.
sed 's/\\-/-/g; s/\\f[BIRP]//g' "$(dirname "$0")/../../man/dmio.1" >"$T/man"
for cmd in copy zero verify info demo serve bench; do
	"$DMIO" "$cmd" --help >"$T/help"
	opts=$(sed -nE 's/^  (-., |    )--([a-z-]+)( [^ ]+)?  .*/\2/p' "$T/help")
	check "dmio $cmd --help lists options" [ -n "$opts" ]
	for o in $opts; do
		arg=$(sed -nE "s/^  (-., |    )--$o ([A-Z]+)  .*/\2/p" "$T/help")
		case $arg in
		"") set -- "--$o" ;;
		SIZE) set -- "--$o" 4096 ;;
		P) set -- "--$o" round-robin ;;
		*) set -- "--$o" 1 ;;
		esac
		run "$cmd" "$@" --help
		check "dmio $cmd accepts $*, as its help says" status 0
		check "dmio(1) describes $cmd's --$o" \
			grep -qE -- "--$o([^a-z-]|$)" "$T/man"
	done
done

run --version
check "dmio --version exits 0" status 0
check "dmio --version names the tool" has "^dmio [0-9]+\.[0-9]+\.[0-9]+" "$T/out"

run -V
check "dmio -V prints the version too" has "^dmio [0-9]+\.[0-9]+\.[0-9]+" \
	"$T/out"

# ---- region syntax: what people type ----
# same_region REGION: dmio verify of REGION against itself reads the
# region that sectors 2048+3072 (1 MiB + 1.5 MiB) name.
random_file "$T/big" 3M
for region in 1M+1.5M 1mib+1.5MiB 1024K+1536k 2048+3072 1.0M+3072; do
	run verify --json "$T/big@$region" "$T/big@2048+3072"
	check "region @$region is sectors 2048+3072" json \
		"j['exit'] == 0 and j['bytes'] == 1536 * 1024"
done
run verify --json "$T/big@0+1GB" "$T/big"
check "GB counts powers of 1000 (1GB runs past a 3 MiB file)" \
	has "runs past the end of its device" "$T/err"
rm "$T/big"

# ---- usage errors ----
# usage_error MESSAGE-PATTERN ARGS...: dmio ARGS fails as a usage error
# should, and leaves the work folder empty.
usage_error() {
	local pattern=$1

	shift
	run "$@"
	check "dmio $* exits 2" status 2
	check "dmio $* says why in one line" one_line "$T/err"
	check "dmio $* says: $pattern" has "$pattern" "$T/err"
	check "dmio $* prints nothing on stdout" [ ! -s "$T/out" ]
	check "dmio $* creates nothing" [ -z "$(ls -A "$T/w")" ]
}

usage_error "^dmio copy: unknown option '--frob' \(see dmio copy --help\)$" \
	copy --frob "$T/src" "$T/w/d"
usage_error "^dmio copy: unknown option '-x'" copy -x "$T/src" "$T/w/d"
usage_error "option '--quiet' takes no value" \
	copy --quiet=yes "$T/src" "$T/w/d"
usage_error "missing source and destination" copy
usage_error "missing destination" copy "$T/src"
usage_error "out of range" copy "$T/src@99999999999999999999999" "$T/w/d"
usage_error "out of range" copy "$T/src" "$T/w/d@1+36028797018963968"
usage_error "bad region '$T/src@1MB'.*SPEC@SECTOR\+COUNT.*K, M, G, T" \
	copy "$T/src@1MB" "$T/w/d"
usage_error "bad region '$T/w/d@1x'" copy "$T/src" "$T/w/d@1x"
usage_error "bad region '$T/src@0\+1.5'" verify "$T/src@0+1.5" "$T/src"
usage_error "at most 8 destinations" copy "$T/src" \
	"$T/w/1" "$T/w/2" "$T/w/3" "$T/w/4" "$T/w/5" "$T/w/6" "$T/w/7" \
	"$T/w/8" "$T/w/9"
usage_error "exclude each other" copy --direct --buffered "$T/src" "$T/w/d"
usage_error "cannot open source" copy "$T/no-such-source" "$T/w/d"
usage_error "runs past the end" copy "$T/src@200" "$T/w/d"
usage_error "runs past the end" copy "$T/src@0+129" "$T/w/d"
usage_error "shorter than the copy" copy "$T/src" "$T/w/d@0+1"
usage_error "does not exist" copy --no-create "$T/src" "$T/w/d"
usage_error "unknown option '--fua'" zero --fua "$T/src"
usage_error "missing region" zero
usage_error "missing a region to compare with" verify "$T/src"
usage_error "missing device" info
usage_error "option '--size' needs a value" demo --size
usage_error "bad size 'lots'" demo --size lots
usage_error "bad size '0'" demo --size 0
usage_error "unexpected argument" demo now
usage_error "^dmio: unknown command 'frob' \(see dmio --help\)$" frob
usage_error "^dmio: unknown option '--frob'" --frob
usage_error "unknown command 'frob'" help frob
usage_error "missing command" # no arguments at all

# ---- --json: one JSON object on stdout for usage errors too ----
# json_error MESSAGE-PATTERN ARGS...: dmio ARGS exits 2 with its message
# on stderr and as {"error": ..., "exit": 2} on stdout.
json_error() {
	local pattern=$1

	shift
	run "$@"
	check "dmio $* exits 2" status 2
	check "dmio $* still says why on stderr" has "$pattern" "$T/err"
	check "dmio $* prints one JSON line on stdout" one_line "$T/out"
	check "dmio $* prints the error and exit 2 as JSON" json \
		"j['exit'] == 2 and isinstance(j['error'], str)"
	check "dmio $* puts the message in the JSON" has "$pattern" "$T/out"
	check "dmio $* creates nothing" [ -z "$(ls -A "$T/w")" ]
}

head -c 4K /dev/zero >"$T/small"
json_error "missing destination" copy --json "$T/src"
json_error "unknown option '--frob'" copy --frob --json "$T/src" "$T/w/d"
json_error "cannot open source" copy --json "$T/no-such-source" "$T/w/d"
json_error "too small" copy --json "$T/src" "$T/small"
json_error "runs past the end" copy --json "$T/src@200" "$T/w/d"
json_error "missing region" zero --json
json_error "missing a region to compare with" verify --json "$T/src"
json_error "cannot open source" verify --json "$T/no-such-source" "$T/src"
json_error "missing device" info --json
json_error "unknown option '--json'" --json
run zero --json
check "the JSON error names the command" json "j['command'] == 'zero'"

DMIO_BACKEND=bogus run copy "$T/src" "$T/w/d"
check "a bad DMIO_BACKEND exits 2" status 2
check "... naming it" has "DMIO_BACKEND='bogus'" "$T/err"
check "... and creates nothing" absent "$T/w/d"

done_testing
