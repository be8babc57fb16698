#!/bin/sh
# Installs every Debian 12 package that usview's build, tests, benchmarks and
# demo need. Idempotent; run as root on a fresh machine.
set -eu
export DEBIAN_FRONTEND=noninteractive

BUILD="build-essential cmake pkg-config git clang-format clang libclang-rt-14-dev
  libdcmtk-dev dcmtk libopenblas-dev libjpeg62-turbo-dev libpng-dev
  libopenjp2-7-dev libyaml-dev libcjson-dev libsystemd-dev libmicrohttpd-dev
  libcmocka-dev zlib1g-dev libtesseract-dev tesseract-ocr-eng libssl-dev libpq-dev"
TEST="python3 python3-numpy python3-opencv python3-pydicom python3-gdcm
  python3-pil python3-yaml orthanc dicom3tools curl procps systemd chromium openssl
  prometheus haproxy dpkg-dev lintian postgresql"
BENCH="python3-torch ${USVIEW_BENCH_DEPS:-}"

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: must run as root" >&2
	exit 1
fi

apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $BUILD $TEST $BENCH
