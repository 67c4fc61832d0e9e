#!/bin/sh
# Prepares a CI machine (as root) for the real-sshd transport tests in tests/ssh_transport.rs:
# OpenSSH server and sudo installed, the Carbonio service user `zextras` (home /opt/zextras,
# bash) and the password-auth test user `cfleet-test`. Idempotent: safe to run repeatedly.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup-root.sh: needs root (skipping)" >&2
    exit 0
fi

if [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/bin/sudo ] || ! command -v ssh-keygen >/dev/null || ! command -v ssh-agent >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server openssh-client sudo
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
