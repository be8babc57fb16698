#!/bin/sh
# promtool on packaging/prometheus: the scrape configuration (and the rule
# file it loads), the alerting rules, and their unit tests
# (usview.rules.test.yml, usview.rules.baseline.test.yml). Exit 77
# (skipped) without promtool.
# usage: check_rules.sh PACKAGING_PROMETHEUS_DIR
set -eu
if ! command -v promtool >/dev/null 2>&1; then
	echo "SKIP: promtool is not installed (Debian package prometheus)"
	exit 77
fi
cd "$1"
promtool check config usview.yml
promtool check rules usview.rules.yml
promtool test rules usview.rules.test.yml usview.rules.baseline.test.yml
