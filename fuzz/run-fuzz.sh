#!/bin/sh
# run-fuzz.sh FUZZER SECONDS [WORKDIR] [libFuzzer options...]
# Run FUZZER for SECONDS from the seed corpus next to this script; new
# inputs go to WORKDIR (default: corpus-work next to FUZZER), crashes to
# WORKDIR/artifacts.  Exits non-zero when the fuzzer found a problem.
set -eu
fuzzer=$1
seconds=$2
work=${3:-$(dirname "$fuzzer")/corpus-work}
[ $# -ge 3 ] && shift 3 || shift $#
seeds=$(cd "$(dirname "$0")" && pwd)/corpus
mkdir -p "$work/corpus" "$work/artifacts"
exec "$fuzzer" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
	-artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$seeds"
