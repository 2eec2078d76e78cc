#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then runs them.
# Usage: tests/run.sh        (as root for the system packages; CI runs this via .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the integration tests use: OpenSSH (a real sshd on loopback for node
# tests), qemu-img (image tests) and systemd-analyze (the units and timers are verified).
# Installed only when missing.
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "tests/run.sh: installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "tests/run.sh: missing ${need[*]}; run as root to install them" >&2
        exit 1
    fi
fi

# The whole workspace: nodepool and the simulator crate (tests/simulator) it is tested against.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
