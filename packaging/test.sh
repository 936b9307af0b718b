#!/bin/bash
# test.sh is the package acceptance test (make package-test, issue 6): two
# cross builds from the same commit (the second from another directory with
# an empty build cache) give the same bytes, binaries and packages; the ARM
# binaries run under qemu-user; the packages hold the expected files,
# owners, modes and conffiles; and the amd64 package installs, upgrades
# (keeping an edited conffile), removes and purges as Debian users expect.
#
# It installs into this machine, so it runs as root on a throwaway machine
# (CI), refuses to run if an intercom package is already installed, and
# purges what it installed and deletes the user and groups it created.
# Without systemd as PID 1 (containers) the maintainer scripts take their
# no-systemd paths, which is what is tested here.
#
# PACKAGE_TEST_CACHE=shared lets the second build reuse the build cache: it
# then checks only what the build directory and time could change (and
# relinks), in seconds instead of minutes of cold compiles.
set -Eeuo pipefail
shopt -s inherit_errexit
trap 'echo "package-test: FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
top=$PWD

fail() {
	echo "package-test: FAIL: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root: it installs and purges the intercom package"
for t in dpkg-deb readelf setpriv qemu-aarch64-static qemu-arm-static; do
	command -v "$t" >/dev/null || fail "$t missing; install with: apt-get install binutils util-linux qemu-user-static"
done
if dpkg-query -W intercom >/dev/null 2>&1; then
	fail "an intercom package is installed here; purge it first (dpkg -P intercom)"
fi

tmp=$(mktemp -d /tmp/intercom-package-test.XXXXXX)
had_user=false had_group=false had_gpio=false
getent passwd intercom >/dev/null && had_user=true
getent group intercom >/dev/null && had_group=true
getent group gpio >/dev/null && had_gpio=true

timings=""
step_start=$SECONDS
step() {
	echo "== $*"
	step_start=$SECONDS
}
took() {
	timings="$timings$(printf '  %-44s %4ds' "$1" $((SECONDS - step_start)))"$'\n'
}

cleanup() {
	if dpkg-query -W intercom >/dev/null 2>&1; then
		dpkg -P intercom >/dev/null 2>&1 || echo "package-test: cleanup: dpkg -P intercom failed" >&2
	fi
	$had_user || ! getent passwd intercom >/dev/null || userdel intercom
	$had_group || ! getent group intercom >/dev/null || groupdel intercom
	$had_gpio || ! getent group gpio >/dev/null || groupdel gpio
	rm -rf "$tmp"
	printf 'package-test timings:\n%s' "$timings"
}
trap cleanup EXIT

# want_eq NAME GOT WANT
want_eq() {
	[ "$2" = "$3" ] || fail "$1: got \"$2\", want \"$3\""
}
# want_same NAME FILE WANT_FILE
want_same() {
	cmp -s "$2" "$3" || fail "$1: $2 differs from $3"
}
want_stat() {
	[ -e "$1" ] || fail "$1 missing"
	want_eq "owner and mode of $1" "$(stat -c '%U:%G %a' "$1")" "$2"
}
want_absent() {
	if [ -e "$1" ] || [ -L "$1" ]; then
		fail "$1 still there"
	fi
}
want_status() {
	want_eq "dpkg status" "$(dpkg-query -W -f='${Status} ${Version}' intercom 2>/dev/null)" "$1"
}

# One version for every build here, even if HEAD moves meanwhile.
version=$(packaging/debversion)
a=$tmp/a b=$tmp/b
arches="amd64 arm64 armv7"
declare -A deb_arch=([amd64]=amd64 [arm64]=arm64 [armv7]=armhf)
declare -A machine=([amd64]=X86-64 [arm64]=AArch64 [armv7]=ARM)

step "cross toolchain (make cross-deps)"
make -s cross-deps
took "cross toolchain install"

step "make cross"
make -s cross DIST="$a" >/dev/null
took "make cross (first)"

step "make deb"
make -s deb DIST="$a" DEB_VERSION="$version"
took "make deb (relinks, packs three)"

step "make deb again: another directory, ${PACKAGE_TEST_CACHE:-cold} build cache"
# Only the tree as it is (tracked, untracked, uncommitted changes) is
# copied; bin/ holds build outputs.
mkdir "$tmp/src"
tar -C "$top" --exclude=./bin -cf - . | tar -C "$tmp/src" -xf -
if [ "${PACKAGE_TEST_CACHE:-cold}" = shared ]; then
	make -s -C "$tmp/src" deb DIST="$b" DEB_VERSION="$version" >/dev/null
else
	GOCACHE=$tmp/gocache make -s -C "$tmp/src" deb DIST="$b" DEB_VERSION="$version" >/dev/null
fi
rm -rf "$tmp/gocache" "$tmp/src"
for arch in $arches; do
	f=intercom-linux-$arch p=intercom_${version}_${deb_arch[$arch]}.deb
	want_same "second build" "$b/$f" "$a/$f"
	want_same "second build" "$b/$p" "$a/$p"
	echo "$f, $p: identical"
done
took "second make deb, ${PACKAGE_TEST_CACHE:-cold} cache"

step "binaries: native and under qemu-user"
# The oldest CPU of the boards each binary is for: the Cortex-A53 (Pi 3,
# Zero 2 W) and the Cortex-A7 (Pi 2); qemu's default CPU has every feature.
declare -A run=(
	[amd64]=""
	[arm64]="qemu-aarch64-static -cpu cortex-a53 -L /usr/aarch64-linux-gnu"
	[armv7]="qemu-arm-static -cpu cortex-a7 -L /usr/arm-linux-gnueabihf"
)
declare -A platform=([amd64]=linux/amd64 [arm64]=linux/arm64 [armv7]=linux/arm)
commit=$(git rev-parse HEAD)
commit_time=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)
for arch in $arches; do
	bin=$a/intercom-linux-$arch
	want_eq "$arch ELF machine" "$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p' | sed 's/Advanced Micro Devices //')" "${machine[$arch]}"
	out=$(${run[$arch]} "$bin" version)
	echo "$out"
	case $out in
	"intercom "*"(commit $commit"*" $commit_time) go"*" ${platform[$arch]}") ;;
	*) fail "$arch: intercom version: got \"$out\", want version, commit $commit, its time $commit_time and ${platform[$arch]}" ;;
	esac
	${run[$arch]} "$bin" config check examples/sim.yaml
	${run[$arch]} "$bin" config check packaging/intercom.yaml
done
took "run binaries (qemu-user for arm)"

step "package contents"
expect_files="drwxr-xr-x root/root ./
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/intercom/
-rw-r----- root/root ./etc/intercom/intercom.yaml
drwxr-xr-x root/root ./lib/
drwxr-xr-x root/root ./lib/systemd/
drwxr-xr-x root/root ./lib/systemd/system/
-rw-r--r-- root/root ./lib/systemd/system/intercom.service
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/bin/
-rwxr-xr-x root/root ./usr/bin/intercom
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/intercom/
-rw-r--r-- root/root ./usr/share/doc/intercom/README.md
drwxr-xr-x root/root ./usr/share/doc/intercom/examples/
-rw-r--r-- root/root ./usr/share/doc/intercom/examples/pbx.yaml"
expect_control="drwxr-xr-x root/root ./
-rw-r--r-- root/root ./conffiles
-rw-r--r-- root/root ./control
-rwxr-xr-x root/root ./postinst
-rwxr-xr-x root/root ./postrm
-rwxr-xr-x root/root ./prerm"
for arch in $arches; do
	deb=$a/intercom_${version}_${deb_arch[$arch]}.deb
	want_eq "$deb fields" "$(dpkg-deb -f "$deb" Package Version Architecture Recommends)" \
		"Package: intercom
Version: $version
Architecture: ${deb_arch[$arch]}
Recommends: libportaudio2"
	depends=$(dpkg-deb -f "$deb" Depends)
	case $depends in
	"libc6 (>= 2."*"), adduser") ;;
	*) fail "$deb: Depends: $depends" ;;
	esac
	want_eq "$deb files" "$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}')" "$expect_files"
	want_eq "$deb control files" "$(dpkg-deb --ctrl-tarfile "$deb" | tar -tvf - | awk '{print $1, $2, $6}' | sort -k3)" "$expect_control"
	want_eq "$deb conffiles" "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles)" /etc/intercom/intercom.yaml
	dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/bin/intercom >"$tmp/packed"
	want_same "$deb /usr/bin/intercom" "$tmp/packed" "$a/intercom-linux-$arch"
	echo "$(basename "$deb"): ok ($depends)"
done
took "inspect packages"

conf=/etc/intercom/intercom.yaml
wants=/etc/systemd/system/multi-user.target.wants/intercom.service
v1=$a/intercom_${version}_amd64.deb

step "install"
dpkg -i "$v1" | tee "$tmp/install.log"
want_status "install ok installed $version"
grep -q "edit $conf, then: systemctl enable --now intercom" "$tmp/install.log" ||
	fail "postinst: no hint to edit $conf on a first install"
want_same "installed binary" /usr/bin/intercom "$a/intercom-linux-amd64"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd intercom)
[ "$uid" -lt 1000 ] || fail "intercom user: uid $uid is not a system uid"
want_eq "intercom user's home" "$home" /var/lib/intercom
want_eq "intercom user's shell" "$shell" /usr/sbin/nologin
want_eq "intercom user's groups" "$(id -nG intercom | tr ' ' '\n' | sort | tr '\n' ' ')" "audio gpio intercom "
want_stat /var/lib/intercom "intercom:intercom 750"
want_stat "$conf" "root:intercom 640"
want_stat /lib/systemd/system/intercom.service "root:root 644"
setpriv --reuid intercom --regid intercom --init-groups intercom config check "$conf"
if setpriv --reuid nobody --regid nogroup --clear-groups cat "$conf" >/dev/null 2>&1; then
	fail "$conf is readable by nobody"
fi
systemd-analyze verify /lib/systemd/system/intercom.service
want_absent "$wants"
took "install (dpkg -i) and checks"

step "admin: edit the config, enable the service; the station writes state"
sed 's/^  name: Front door$/  name: Garden gate/' "$conf" >"$tmp/edited.yaml"
cmp -s "$conf" "$tmp/edited.yaml" && fail "the config edit changed nothing"
cat "$tmp/edited.yaml" >"$conf"
setpriv --reuid intercom --regid intercom --init-groups install -m 0600 /dev/null /var/lib/intercom/state
systemctl enable intercom.service
[ -L "$wants" ] || fail "systemctl enable made no $wants"
took "admin changes"

step "upgrade to a bumped version"
v2=$version+pkgtest1
dpkg --compare-versions "$v2" gt "$version" || fail "$v2 does not sort after $version"
make -s deb-amd64 DIST="$tmp/v2" DEB_VERSION="$v2" VERSION=pkgtest-upgrade >/dev/null
dpkg -i "$tmp/v2/intercom_${v2}_amd64.deb"
want_status "install ok installed $v2"
case $(intercom version) in
"intercom pkgtest-upgrade "*) ;;
*) fail "after the upgrade: intercom version: $(intercom version)" ;;
esac
cmp "$conf" "$tmp/edited.yaml" || fail "the upgrade changed the edited $conf"
for f in "$conf".dpkg-new "$conf".dpkg-dist "$conf".dpkg-old; do want_absent "$f"; done
want_stat "$conf" "root:intercom 640"
want_stat /var/lib/intercom/state "intercom:intercom 600"
[ -L "$wants" ] || fail "the upgrade disabled the service"
want_eq "intercom uid after the upgrade" "$(id -u intercom)" "$uid"
took "upgrade (build + dpkg -i) and checks"

step "remove"
dpkg -r intercom
want_status "deinstall ok config-files $v2"
want_absent /usr/bin/intercom
want_absent /lib/systemd/system/intercom.service
cmp "$conf" "$tmp/edited.yaml" || fail "remove changed the edited $conf"
want_stat /var/lib/intercom/state "intercom:intercom 600"
getent passwd intercom >/dev/null || fail "remove deleted the intercom user"
took "remove (dpkg -r) and checks"

step "install again over the kept config"
dpkg -i "$tmp/v2/intercom_${v2}_amd64.deb"
want_status "install ok installed $v2"
cmp "$conf" "$tmp/edited.yaml" || fail "reinstalling changed the edited $conf"
want_absent /etc/systemd/system/intercom.service
[ -L "$wants" ] || fail "reinstalling lost the enabled service"
took "reinstall and checks"

step "purge"
dpkg -P intercom
dpkg-query -W intercom >/dev/null 2>&1 && fail "dpkg still knows intercom after the purge"
want_absent /etc/intercom
want_absent /var/lib/intercom
want_absent "$wants"
want_absent /etc/systemd/system/intercom.service
# A state directory that does not exist holds nothing.
left=$(find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
	-name '*intercom*' 2>/dev/null || true)
[ -z "$left" ] || fail "deb-systemd-helper state left after the purge: $left"
getent passwd intercom >/dev/null || fail "purge deleted the intercom user (Debian keeps system users)"
took "purge (dpkg -P) and checks"

echo "package-test: ok"
