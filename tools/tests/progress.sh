#!/bin/bash
# Progress: a bar redrawn in place on a terminal (a pseudo-terminal made by
# script(1)), one summary line otherwise, nothing with --quiet.
. "$(dirname "$0")/lib.sh"

random_file "$T/src" 32M

# pty_has PYTHON-REGEX: the terminal output matches.
pty_has() {
	python3 -c '
import re, sys
sys.exit(0 if re.search(sys.argv[2].encode(), open(sys.argv[1], "rb").read())
	 else 1)' "$T/pty" "$1" || {
		echo "# terminal output: $(head -c 400 "$T/pty" | od -c | head -n 6)"
		return 1
	}
}

# A source slowed down by the fault wrapper, so that the bar is drawn
# several times.
slow="fault:delay=20:$T/src"
start=$(date +%s%N)
script -qec "'$DMIO' copy '$slow' '$T/d1'" /dev/null >"$T/pty" 2>&1
rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
check "under a terminal the copy exits 0" [ $rc -eq 0 ]
check "... and copies" cmp "$T/src" "$T/d1"
check "the bar shows bytes done and total" pty_has "MiB / 32\.0 MiB"
check "the bar shows MiB/s" pty_has "[0-9.]+ MiB/s"
check "the bar shows an ETA while running" pty_has "ETA [0-9]+:[0-9]{2}"
check "the bar is redrawn in place with a carriage return" \
	pty_has "\r[^\n]+\r[^\n]"
check "the bar ends at 100% and a newline" \
	pty_has "100% [^\r\n]*in [0-9.]+ s(\x1b\[K)?\r?\n"
check "the bar shows the flush rather than sitting at 100%" \
	pty_has "100% [^\r\n]*MiB/s  flushing\.\.\."
check "the table follows" pty_has "1 +\S+/d1 +OK"
draws=$(tr -cd '\r' <"$T/pty" | wc -c)
check "at most ~10 redraws a second" \
	[ "$draws" -le $((elapsed_ms / 100 + 8)) ]

run copy "$T/src" "$T/d2"
check "not on a terminal: exit 0" status 0
check "... exactly one summary line on stderr" one_line "$T/err"
check "... saying what was copied and how fast" \
	has "^dmio copy: copied 32\.0 MiB to 1 destination in [0-9.]+ s, [0-9.]+ MiB/s$" \
	"$T/err"
check "... without carriage returns" bash -c "! grep -q $'\r' '$T/err'"

# ---- -p: periodic lines where stderr is not a terminal ----
run copy -p "$T/src" "$T/d5"
check "-p off a terminal: exit 0" status 0
check "... a progress line as the copy starts" \
	has "^dmio copy: copied [0-9.]+ [KMG]?i?B of 32\.0 MiB \([0-9]+%\), [0-9.]+ MiB/s$" \
	"$T/err"
check "... a line when the flush begins" \
	has "^dmio copy: copied 32\.0 MiB of 32\.0 MiB \(100%\), [0-9.]+ MiB/s, flushing$" \
	"$T/err"
check "... and the summary line last" \
	bash -c "tail -n 1 '$T/err' | grep -q '^dmio copy: copied 32\.0 MiB to 1 destination in'"
check "... without carriage returns" bash -c "! grep -q $'\r' '$T/err'"

run copy -p --json "$T/src" "$T/d6"
check "-p --json: exit 0, the result on stdout as before" json \
	"j['command'] == 'copy' and j['exit'] == 0"
check "-p --json: every stderr line is a JSON progress object" python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) >= 3, lines
assert all(l["progress"] == "copied" and l["total"] == 32 << 20 for l in lines)
assert [l["phase"] for l in lines][-2:] == ["flushing", "done"], lines
assert lines[-1]["bytes"] == 32 << 20 and lines[0]["phase"] == "running"
' "$T/err"

run verify --progress "$T/src" "$T/d5"
check "verify --progress: exit 0" status 0
check "... a progress line, then the summary" \
	has "^dmio verify: compared [0-9.]+ [KMG]?i?B of 32\.0 MiB" "$T/err"

run zero -p "$T/d6"
check "zero -p: a line when the flush begins" \
	has "^dmio zero: zeroed 32\.0 MiB of 32\.0 MiB \(100%\), [0-9.]+ MiB/s, flushing$" \
	"$T/err"

run copy -q "$T/src" "$T/d3"
check "--quiet: nothing on stderr" [ ! -s "$T/err" ]
check "--quiet: the table still on stdout" has " OK$" "$T/out"

script -qec "'$DMIO' copy --quiet '$slow' '$T/d4'" /dev/null >"$T/pty" 2>&1
check "--quiet on a terminal: no bar" bash -c "! grep -q 'MiB/s' '$T/pty'"

script -qec "'$DMIO' verify '$slow' '$T/d1'" /dev/null >"$T/pty" 2>&1
check "verify draws the bar too" pty_has "100% [^\r\n]*MiB/s"
check "... then its table" pty_has "1 +.*d1 +same"

script -qec "'$DMIO' zero '$T/d4'" /dev/null >"$T/pty" 2>&1
check "zero draws the bar too" pty_has "100% [^\r\n]*MiB/s"

done_testing
