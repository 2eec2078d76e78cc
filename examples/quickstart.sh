#!/bin/sh
# nodepool end to end on this machine, no cloud needed: start the OpenStack simulator, run
# `nodepool reconcile` passes against examples/quickstart.yaml until the pool is full
# (each pass prints its summary), show `nodepool list`, stop the simulator.
#
# Needs only the Rust toolchain. NODEPOOL_BIN_DIR=DIR uses binaries already built there.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${NODEPOOL_BIN_DIR:-}
if [ -z "$bin" ]; then
    echo "quickstart: building nodepool and the simulator (cargo build --release --workspace)"
    (cd "$repo" && cargo build --release --quiet --workspace --bins)
    bin=$repo/target/release
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/nodepool-quickstart.XXXXXX")
sim_pid=
stop() {
    if [ -n "$sim_pid" ]; then
        kill "$sim_pid" 2>/dev/null || true
        # Bounded: a simulator that has not gone after 5 s is killed outright.
        tries=0
        while kill -0 "$sim_pid" 2>/dev/null && [ $tries -lt 50 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        kill -9 "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

# A simulated cloud on a free loopback port; servers take 1 s to boot.
"$bin/nodepool-simulator" --port 0 --boot-delay 1 >"$work/simulator.log" 2>&1 &
sim_pid=$!
url=
tries=0
while [ -z "$url" ] && [ $tries -lt 100 ]; do
    url=$(sed -n 's/^nodepool-simulator listening on //p' "$work/simulator.log")
    [ -n "$url" ] || sleep 0.1
    tries=$((tries + 1))
done
if [ -z "$url" ]; then
    echo "quickstart: the simulator did not start:" >&2
    cat "$work/simulator.log" >&2
    exit 1
fi
sed "s#http://127.0.0.1:8775#$url#" "$repo/examples/quickstart.yaml" >"$work/nodepool.yaml"
echo "quickstart: simulator at $url, configuration $work/nodepool.yaml"

nodepool() {
    "$bin/nodepool" -c "$work/nodepool.yaml" "$@"
}

# Full: the last pass left no label short of min-ready and nothing building.
full() {
    status=$(nodepool --format json status)
    echo "$status" | grep -q '"deficit": 0' &&
        ! echo "$status" | grep -Eq '"(deficit|building)": [1-9]'
}

pass=1
while :; do
    printf 'pass %d: ' "$pass"
    nodepool reconcile
    if full; then
        break
    fi
    if [ $pass -ge 30 ]; then
        echo "quickstart: the pool is not full after $pass passes" >&2
        nodepool status >&2
        exit 1
    fi
    pass=$((pass + 1))
    sleep 0.5
done

echo
nodepool list
echo
nodepool status
