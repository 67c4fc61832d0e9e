#!/bin/sh
# Prepares a CI machine (as root) for the test suites that use real components: OpenSSH
# server and client, sudo, tmux and Chromium installed, the Carbonio service user `zextras` (home /opt/zextras,
# bash) and the password-auth test user `cfleet-test`. Idempotent: safe to run repeatedly.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup-root.sh: needs root (skipping)" >&2
    exit 0
fi

# What the suites run for real: OpenSSH sshd and client, sudo, tmux (progress bars in a
# real terminal), Chromium (the HTML report rendered), iproute2/util-linux (namespaces).
missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh-keygen >/dev/null && command -v ssh-agent >/dev/null || missing="$missing openssh-client"
[ -x /usr/bin/sudo ] || missing="$missing sudo"
command -v tmux >/dev/null || missing="$missing tmux"
command -v chromium >/dev/null || missing="$missing chromium"
command -v ip >/dev/null || missing="$missing iproute2"
command -v unshare >/dev/null || missing="$missing util-linux"
if [ -n "$missing" ]; then
    apt-get update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
fi

# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
chmod 0755 /run/sshd

if ! id zextras >/dev/null 2>&1; then
    mkdir -p /opt
    useradd --create-home --home-dir /opt/zextras --shell /bin/bash zextras
fi

if ! id cfleet-test >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash cfleet-test
fi
# With `UsePAM no` sshd checks /etc/shadow itself; an unset password (`!`) would also
# mark the account locked and block key logins. Keep in sync with tests/support/sshd.rs.
echo 'cfleet-test:cfleet-test-Pa55' | chpasswd
