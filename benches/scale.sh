#!/usr/bin/env bash
# Provider scale: load time and peak RSS of `customs check` on generated configs of 10k, 100k and
# 1M tenants (screening on, against the example list plus 12,000 synthetic entries), the same
# served (`customs demo`: resident after start, and a reload after a one-tenant change), and a
# config error in the 900,000th tenant. Writes a text result to benches/load/results/.
#
#   benches/scale.sh [TENANTS...]        default: 10000 100000 1000000
#   SCALE_FILES=0 benches/scale.sh       the tenants in tenants.toml instead of 100 files of
#                                        tenants.d/ (a reload then reads them all again)
#
# Uses the release binary (built here), /tmp for the generated folders (a million tenants is
# about 280 MB), and the demo's loopback ports 8080, 8081-8083 and 9090 for the served runs.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-10000 100000 1000000}")
read -r -a counts <<< "${counts[*]}"
files=${SCALE_FILES:-100}

cargo build --release --locked --bin customs >&2
bin=target/release/customs
commit=$(git rev-parse --short HEAD)
out="benches/load/results/$(date -u +%F)-scale-${commit}-files${SCALE_FILES:-100}.txt"
work=$(mktemp -d /tmp/customs-scale.XXXXXX)
trap 'pkill -f "customs demo --config $work" 2>/dev/null || true; rm -rf "$work"' EXIT

# Peak RSS (MiB) and wall seconds of one command, as "seconds MiB".
measure() {
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/stdout" 2>&1 || true
    awk '{ printf "%.2f %.0f\n", $1, $2 / 1024 }' "$work/time"
}

{
    echo "# customs provider scale, commit ${commit}, $(date -u +%FT%TZ), $(nproc) cores, tenants in $files file(s)"
    echo "# tenants | check s | check peak MiB | serve start s | serve MiB | reload s | reload peak MiB"
} > "$out"

for n in "${counts[@]}"; do
    dir="$work/t$n"
    "$bin" generate --from config --out "$dir" --tenants "$n" --files "$files" >&2
    # Reloads are asked for below, and timed; the watcher would start them itself.
    sed -i 's/^watch = true /watch = false/' "$dir/gateway.toml"
    # The median of three loads.
    check=$(for _ in 1 2 3; do measure "$bin" check --config "$dir"; done | sort -n | sed -n 2p)
    grep -q "39 passed" "$work/stdout" || { echo "check failed on $n tenants:" >&2; cat "$work/stdout" >&2; exit 1; }

    "$bin" demo --config "$dir" > "$work/demo.log" 2>&1 &
    demo=$!
    started=$(date +%s.%N)
    until curl -sf -o /dev/null http://127.0.0.1:9090/readyz; do
        kill -0 "$demo" 2>/dev/null || { cat "$work/demo.log" >&2; exit 1; }
        sleep 0.05
    done
    start=$(echo "$(date +%s.%N) - $started" | bc)
    serve=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$demo/status")
    # The last tenant's legal name changes: its file is read again, the others are kept.
    last=$((n - 1))
    python3 - "$dir" "$(printf 'gen-%07d' "$last")" <<'EOF'
import glob, sys
folder, tid = sys.argv[1], sys.argv[2]
path = next(p for p in glob.glob(folder + "/tenants*.toml") + sorted(glob.glob(folder + "/tenants.d/*.toml"))
            if f'id = "{tid}"' in open(p).read())
text = open(path).read()
at = text.index(f'id = "{tid}"')
name = text.index('legal_name = "', at) + len('legal_name = "')
open(path, "w").write(text[:name] + "Renamed " + text[name:])
EOF
    t0=$(date +%s.%N)
    curl -sf -X POST -H "Authorization: Bearer demo-admin-token" http://127.0.0.1:9090/admin/reload \
        | grep -q '"changed":true'
    reload=$(echo "$(date +%s.%N) - $t0" | bc)
    peak=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$demo/status")
    kill "$demo"
    wait "$demo" 2>/dev/null || true
    printf "%s | %s | %s | %.2f | %s | %.2f | %s\n" "$n" ${check% *} ${check#* } "$start" "$serve" "$reload" "$peak" \
        | tee -a "$out" >&2
done

# A config error in the 900,000th generated tenant, placed exactly.
if printf '%s\n' "${counts[@]}" | grep -qx 1000000; then
    dir="$work/t1000000"
    file=$( (grep -l 'id = "gen-0899999"' "$dir"/tenants.toml "$dir"/tenants.d/*.toml 2>/dev/null || true) | head -1)
    python3 - "$file" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
at = text.index('id = "gen-0899999"')
j = text.index('jurisdiction = "', at) + len('jurisdiction = "')
open(path, "w").write(text[:j] + "atlantis-" + text[j:])
EOF
    line=$(grep -n 'jurisdiction = "atlantis-' "$file" | cut -d: -f1)
    {
        echo "# the 900,000th generated tenant's jurisdiction spoiled at ${file#"$dir"/}:$line:"
        "$bin" check --config "$dir" 2>&1 | grep atlantis | sed "s|$work/||" || true
    } | tee -a "$out" >&2
fi
echo "$out"
