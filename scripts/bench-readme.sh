#!/usr/bin/env bash
# Puts the table `make bench` wrote (bench.md) into the README's performance
# section, between its markers, so the README shows the figures of the last run.
set -euo pipefail
table=${1:-bench.md}
readme=${2:-README.md}
[ -s "$table" ] || { echo "bench-readme: $table is empty; run make bench" >&2; exit 1; }
grep -q '<!-- bench:start -->' "$readme" && grep -q '<!-- bench:end -->' "$readme" || { echo "bench-readme: $readme has no bench markers" >&2; exit 1; }
tmp=$(mktemp)
awk -v table="$table" '
	/<!-- bench:start -->/ { print; print "_Measured by `make bench` on " strftime("%Y-%m-%d", systime()) ", on the test machine (2 cores); ratios are side by side in one run._"; print ""; while ((getline line < table) > 0) print line; skip = 1; next }
	/<!-- bench:end -->/ { skip = 0 }
	!skip { print }
' "$readme" >"$tmp"
mv "$tmp" "$readme"
echo "bench-readme: $readme updated from $table"
