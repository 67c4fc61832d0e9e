#!/bin/sh
# Prepares a CI machine (as root) for the tests that need the real system:
# - tests/ssh_transport.rs: OpenSSH server and client, sudo, the password-auth test
#   user `cfleet-test`;
# - tests/realfleet.rs: the Carbonio service user `zextras` (home /opt/zextras, bash) and
#   Zimbra's `zimbra` (home /opt/zimbra),
#   `unshare` (util-linux) and `ip` (iproute2) for each node's mount and network
#   namespace (tests/support/realfleet.rs writes zextras's login profile itself);
# - tests/ux.rs: tmux (progress bars in a real pty); src/report/html.rs: chromium
#   (renders report.html headless; skipped without it).
# Idempotent: installs only what is missing, creates users only once.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup-root.sh: needs root (skipping: the real-sshd suites will be SKIPPED)" >&2
    exit 0
fi

missing=""
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || missing="$missing $2"; }
need /usr/sbin/sshd openssh-server
need ssh-keygen openssh-client
need ssh-agent openssh-client
need sudo sudo
need ip iproute2
need unshare util-linux
need nsenter util-linux
need tmux tmux
need chromium chromium
need systemd-analyze systemd
need /usr/bin/systemctl systemd
# Debian's Postfix, for the real-process fleet's MTAs (tests/support/realfleet.rs runs
# one instance per node, in the node's own namespaces, with its own config, queue and
# data directories). Installed without configuring or starting the machine's own
# Postfix: "No configuration" preseeded, and no service started while installing
# (policy-rc.d answering 101, the unit masked). If installing it would remove another
# MTA the machine uses, skip it: the suites then print SKIPPED (or fail under CI=true).
install_postfix() {
    command -v /usr/sbin/postfix >/dev/null 2>&1 && return 0
    apt-get update
    removes=$(apt-get install -s -y postfix 2>/dev/null | sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' ')
    if [ -n "$removes" ]; then
        echo "tests/setup-root.sh: not installing postfix: it would remove $removes (the real-Postfix suites will be SKIPPED)" >&2
        return 0
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    mkdir -p /etc/systemd/system
    [ -e /etc/systemd/system/postfix.service ] || ln -s /dev/null /etc/systemd/system/postfix.service
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=yes
    fi
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix || rc=$?
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    return "$rc"
}
install_postfix

if [ -n "$missing" ]; then
    # shellcheck disable=SC2086 # one word per package
    pkgs=$(printf '%s\n' $missing | sort -u | tr '\n' ' ')
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs
fi

# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
chmod 0755 /run/sshd

if ! id zextras >/dev/null 2>&1; then
    mkdir -p /opt
    useradd --create-home --home-dir /opt/zextras --shell /bin/bash zextras
fi

# The Zimbra service user, for the real-process fleet's Zimbra nodes (each node hides
# the other product's user from its own /etc/passwd).
if ! id zimbra >/dev/null 2>&1; then
    mkdir -p /opt
    useradd --create-home --home-dir /opt/zimbra --shell /bin/bash zimbra
fi

# The service users' one NOPASSWD rule on a real node: Postfix's own binary, for
# `postfix reload` (docs/carbonio.md §4). Inside the real-process fleet's nodes that path
# is the emulator's wrapper.
rules='zextras ALL=(root) NOPASSWD: /opt/zextras/common/sbin/postfix
zimbra ALL=(root) NOPASSWD: /opt/zimbra/common/sbin/postfix'
if [ "$(cat /etc/sudoers.d/cfleet-postfix 2>/dev/null)" != "$rules" ]; then
    printf '%s\n' "$rules" > /etc/sudoers.d/cfleet-postfix
    chmod 0440 /etc/sudoers.d/cfleet-postfix
fi

if ! id cfleet-test >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash cfleet-test
fi
# With `UsePAM no` sshd checks /etc/shadow itself; an unset password (`!`) would also
# mark the account locked and block key logins. Keep in sync with tests/support/sshd.rs.
echo 'cfleet-test:cfleet-test-Pa55' | chpasswd
