#!/bin/sh
# The Makefile's package lists: `make deps` (what `make demo` and
# `make build` install) asks for the build's packages only, `make
# deps-test` for the test suite's too; apt-get waits for another apt's
# lock; nothing is asked for when everything is installed; an install
# that fails as after an interrupted dpkg run finishes that run with
# dpkg --configure -a and tries once more.  Runs make with a fake
# apt-get, dpkg and dpkg-query, so it installs nothing.
set -u
src=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dmio-deps-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0
failed=0
check() {
	what=$1
	shift
	n=$((n + 1))
	if "$@"; then
		echo "ok $n - $what"
	else
		echo "not ok $n - $what"
		failed=$((failed + 1))
	fi
}
has() { grep -Eq -- "$1" "$2"; }
hasnt() { ! grep -Eq -- "$1" "$2"; }

# A dpkg-query that knows no package, and one that knows them all.
printf '#!/bin/sh\nexit 1\n' >"$tmp/none"
printf '#!/bin/sh\necho "install ok installed"\n' >"$tmp/all"
chmod +x "$tmp/none" "$tmp/all"

deps() {
	make -s --no-print-directory -C "$src" "$1" APT_GET=echo \
		DPKG_QUERY="$tmp/$2" >"$tmp/out" 2>&1
}

build="gcc meson ninja-build pkg-config liburing-dev libnbd-dev"
testonly="clang libcmocka-dev nbdkit nbdkit-plugin-dev libnbd-bin qemu-utils fio valgrind debhelper"
if [ "$(id -u)" = 0 ]; then
	deps deps none
	check "make deps, nothing installed: runs apt-get update, then install" \
		has "update -qq" "$tmp/out"
	for p in $build; do
		check "make deps installs $p" has "install -y -qq.* $p( |\$)" "$tmp/out"
	done
	for p in $testonly; do
		check "make deps does not install the test-only $p" \
			hasnt "install -y -qq.* $p( |\$)" "$tmp/out"
	done
	check "apt-get waits for the dpkg lock" has \
		"-o DPkg::Lock::Timeout=[0-9]+ install -y" "$tmp/out"
	check "apt-get update waits for it too" has \
		"-o DPkg::Lock::Timeout=[0-9]+ update" "$tmp/out"
	deps deps-test none
	for p in $build $testonly; do
		check "make deps-test installs $p" has "install -y -qq.* $p( |\$)" "$tmp/out"
	done

	# An apt-get whose install fails as after a dpkg run killed
	# part-way, until a dpkg --configure -a has run.
	cat >"$tmp/apt" <<-EOF
		#!/bin/sh
		echo "apt-get \$*" >>"$tmp/log"
		case "\$*" in *" install "*) ;; *) exit 0 ;; esac
		[ -e "$tmp/configured" ] && exit 0
		echo "E: dpkg was interrupted" >&2
		exit 100
	EOF
	cat >"$tmp/dpkg" <<-EOF
		#!/bin/sh
		echo "dpkg \$*" >>"$tmp/log"
		[ -e "$tmp/dpkg-fails" ] && exit 2
		touch "$tmp/configured"
	EOF
	chmod +x "$tmp/apt" "$tmp/dpkg"
	interrupted() {
		rm -f "$tmp/log" "$tmp/configured"
		make -s --no-print-directory -C "$src" deps APT_GET="$tmp/apt" \
			DPKG="$tmp/dpkg" DPKG_QUERY="$tmp/none" >"$tmp/out" 2>&1
	}
	interrupted
	check "after an interrupted dpkg run, make deps succeeds" test $? = 0
	check "it runs dpkg --configure -a" has "^dpkg .*--configure -a" "$tmp/log"
	check "and installs again after it" \
		test "$(sed -n '/^dpkg /,$p' "$tmp/log" | grep -c ' install -y')" = 1
	check "and says why" has "finishing any interrupted dpkg run" "$tmp/out"
	touch "$tmp/dpkg-fails"
	interrupted
	check "when dpkg --configure -a fails too, make deps fails" test $? != 0
	check "without installing again" \
		test "$(grep -c ' install -y' "$tmp/log")" = 1
else
	deps deps none
	check "make deps as a user names what is missing, and how to install it" \
		has "missing packages: $build \(run as root, or: sudo apt-get install $build\)" \
		"$tmp/out"
	deps deps-test none
	check "make deps-test as a user names the test packages too" \
		has "missing packages: $build clang .*libcmocka-dev nbdkit " "$tmp/out"
fi
deps deps-test all
check "with everything installed, make deps-test runs nothing" \
	test ! -s "$tmp/out"
echo "1..$n"
[ $failed -eq 0 ]
