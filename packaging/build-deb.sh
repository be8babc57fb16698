#!/bin/sh
# Builds the Debian package usview_<version>-<revision>_<arch>.deb into the
# current directory (Debian 12; needs cmake, a compiler, dpkg-dev and the
# build dependencies of scripts/install-deps.sh; no root needed):
#
#     sh packaging/build-deb.sh [--prebuilt DIR] [--revision N]
#
#   (default)       configure and build the programs in build-deb/pkg/ under
#                   the repository (release build with Debian's hardening
#                   flags from dpkg-buildflags, no tests), then package them
#   --prebuilt DIR  package the programs already built in the CMake tree DIR
#                   (tests/integration/packaging uses the test build this way)
#   --revision N    Debian revision (default 1)
#
# The version is the project version of the root CMakeLists.txt (the only
# one); the programs' --version must agree. The package holds what
# `cmake --install` installs (programs, unit, sysusers entry, configuration,
# documentation, man pages) under /usr, with the unit moved to
# /lib/systemd/system, plus packaging/deb/ (maintainer scripts, conffiles,
# copyright), a generated changelog.Debian.gz and gzipped man pages. The
# runtime dependencies come from dpkg-shlibdeps. Check the result with
# `lintian usview_*.deb`.
set -eu
umask 022

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREBUILT=
REVISION=1
while [ $# -gt 0 ]; do
	case "$1" in
	--prebuilt) PREBUILT=${2:?--prebuilt needs a directory}; shift 2 ;;
	--revision) REVISION=${2:?--revision needs a number}; shift 2 ;;
	-h | --help) sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "build-deb.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
case "$REVISION" in
'' | *[!0-9]*) echo "build-deb.sh: --revision must be a number, not '$REVISION'" >&2; exit 2 ;;
esac
for tool in cmake dpkg-deb dpkg-shlibdeps dpkg-architecture gzip strip; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build-deb.sh: $tool not found (apt-get install cmake dpkg-dev binutils)" >&2
		exit 1
	fi
done

UPSTREAM=$(sed -n 's/^project(usview VERSION \([0-9][0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
if [ -z "$UPSTREAM" ]; then
	echo "build-deb.sh: no 'project(usview VERSION x.y.z' line in $ROOT/CMakeLists.txt" >&2
	exit 1
fi
VERSION="$UPSTREAM-$REVISION"
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
DEB="usview_${VERSION}_${ARCH}.deb"
MAINTAINER=${USV_DEB_MAINTAINER:-usview maintainers <usview@example.org>}
# Reproducible dates: the last commit's, else now.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

if [ -n "$PREBUILT" ]; then
	BUILD=$(cd "$PREBUILT" && pwd)
	if [ ! -f "$BUILD/CMakeCache.txt" ]; then
		echo "build-deb.sh: $BUILD is not a CMake build tree" >&2
		exit 1
	fi
else
	BUILD="$ROOT/build-deb/pkg"
	if [ ! -f "$BUILD/CMakeCache.txt" ]; then
		# (from the sources, so that -ffile-prefix-map maps them to .)
		DEB_BUILD_MAINT_OPTIONS=hardening=+all
		export DEB_BUILD_MAINT_OPTIONS
		CFLAGS="$(cd "$ROOT" && dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
		CXXFLAGS="$(cd "$ROOT" && dpkg-buildflags --get CXXFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
		LDFLAGS=$(dpkg-buildflags --get LDFLAGS) \
			cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
			-DCMAKE_INSTALL_PREFIX=/usr -DUSV_BUILD_TESTS=OFF
	fi
	cmake --build "$BUILD" -j"${JOBS:-2}" --target usviewd usview
fi
for prog in daemon/usviewd cli/usview; do
	got=$("$BUILD/$prog" --version 2>&1 | awk '{print $2; exit}')
	if [ "$got" != "$UPSTREAM" ]; then
		echo "build-deb.sh: $BUILD/$prog is version '$got', CMakeLists.txt says $UPSTREAM (rebuild it)" >&2
		exit 1
	fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/usview-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/src/debian/usview"
DEST="$STAGE/DEBIAN"

DESTDIR="$STAGE" cmake --install "$BUILD" --prefix /usr >"$WORK/install.log" ||
	{ cat "$WORK/install.log" >&2; exit 1; }

# Debian 12 keeps units in /lib/systemd/system (cmake installs them under
# the prefix).
if [ -d "$STAGE/usr/lib/systemd/system" ]; then
	mkdir -p "$STAGE/lib/systemd"
	mv "$STAGE/usr/lib/systemd/system" "$STAGE/lib/systemd/system"
	rmdir "$STAGE/usr/lib/systemd"
fi
for f in usr/sbin/usviewd usr/bin/usview lib/systemd/system/usviewd.service \
	usr/lib/sysusers.d/usview.conf etc/usview/usviewd.yaml; do
	if [ ! -f "$STAGE/$f" ]; then
		echo "build-deb.sh: cmake --install did not install /$f" >&2
		exit 1
	fi
done
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$STAGE/usr/sbin/usviewd" "$STAGE/usr/bin/usview"

# Man pages (cmake installs them as written), documentation.
find "$STAGE/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +
DOC="$STAGE/usr/share/doc/usview"
install -d "$DOC"
install -m 0644 "$ROOT/packaging/deb/copyright" "$DOC/copyright"
DATE=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
cat >"$WORK/changelog" <<EOF
usview ($VERSION) unstable; urgency=medium

  * Package of usview $UPSTREAM: usviewd as a systemd service (user usview,
    spool /var/lib/usview, configuration /etc/usview/usviewd.yaml) and the
    usview command-line tool.

 -- $MAINTAINER  $DATE
EOF
gzip -9n <"$WORK/changelog" >"$DOC/changelog.Debian.gz"
chmod 0644 "$DOC/changelog.Debian.gz"
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -exec chmod 0644 {} +
chmod 0755 "$STAGE/usr/sbin/usviewd" "$STAGE/usr/bin/usview"

# Runtime dependencies of the two programs (dpkg-shlibdeps wants a
# debian/control beside the staged tree).
install -d "$DEST"
printf 'Source: usview\n\nPackage: usview\nArchitecture: any\n' >"$WORK/src/debian/control"
SHLIBS=$(cd "$WORK/src" && dpkg-shlibdeps -O -edebian/usview/usr/sbin/usviewd -edebian/usview/usr/bin/usview |
	sed -n 's/^shlibs:Depends=//p')
if [ -z "$SHLIBS" ]; then
	echo "build-deb.sh: dpkg-shlibdeps found no dependencies" >&2
	exit 1
fi

for s in postinst prerm postrm; do
	install -m 0755 "$ROOT/packaging/deb/$s" "$DEST/$s"
done
install -m 0644 "$ROOT/packaging/deb/conffiles" "$DEST/conffiles"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum) >"$DEST/md5sums"
chmod 0644 "$DEST/md5sums"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
	-e "s/@MAINTAINER@/$MAINTAINER/" -e "s/@SHLIBS@/$SHLIBS/" \
	"$ROOT/packaging/deb/control.in" >"$DEST/control"

dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
