#!/usr/bin/env python3
"""carbonio-fleet benchmark (issue #9). Not a test: wall time on a shared machine is noisy.

  scripts/bench [scale] [--sizes 100,1000,5000] [--latencies 0s,1s] [--restarts 1s] [--forks 64]
  sudo scripts/bench peer [--peer-sizes 50,200] [--reps 3] [--peer-jvm-ms 1000] [--peer-forks 50]
  sudo scripts/bench peer-apply [--peer-sizes 50] [--reps 1] [--peer-jvm-ms 1000]
  scripts/bench apply-terms [--terms-sizes 30,120] [--latencies 1s] [--pause 2s]
  scripts/bench report-html [--html-nodes 1000] [--reps 3]

apply-terms: apply (staged, reload) on a fresh simulated fleet with realistic program costs,
its wall time split into the terms batches x (stage write + read-back + render wait + reload
+ gate + pause) + promotion, from the journal's timestamps.

peer-apply: remediation side by side (fresh real fleet per tool and rep): carbonio-fleet
apply vs the Ansible hardening playbook (serial 10%) vs the same hardening as a pyinfra
deploy (--parallel), then one check of the end state; restarts/reloads counted and the
most MTAs of one cluster down at once.

peer: the same read-only sweep against the same REAL OpenSSH nodes (the CI test fleet,
tests/support/realfleet.rs, needs root) on the realistic-cost fleet (every emulated JVM
start costs --peer-jvm-ms; a zmprov is two): carbonio-fleet vs two floors, bare `xargs -P
50 ssh` loops, one running the tool's EXACT remote command (captured from the first
node's sshd with strace: transport efficiency) and one running only the tool's one
batched zmprov read (remote-work efficiency), vs pyinfra (a deploy that reads the same
attributes in one zmprov batch and the same postconf keys, --parallel 50) vs
ansible-playbook (forks 50, pipelining, ControlPersist); ansible-core and pyinfra from
PyPI in a venv; interleaved reps, with ratios.

report-html: report.html at 1,000 hosts (--html-nodes): a real check of a simulated fleet
(stock nodes: every host in the same drift state), and the same report diversified the
way a real sweep looks (5% unreachable, 20% drift in two states, the rest compliant,
40 customers) and rendered again by the tool (`report merge` of two halves). For each:
file size, and in headless Chromium (DevTools protocol over --remote-debugging-pipe) the
first paint, first contentful paint, DOMContentLoaded and load, median of --reps loads.

scale: check and apply against the simulated fleet (`carbonio-fleet simulate`, a separate
process, so only the tool's own CPU and memory are measured). For each run: wall time,
CPU time (user+sys) and peak RSS of the tool, from /usr/bin/time. Results go to stdout as
a table and to bench-results.json.
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "carbonio-fleet")


def measured(cmd, **kw):
    """Runs cmd under /usr/bin/time; returns (exit, wall_s, cpu_s, max_rss_kib, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-o", tf.name, "-f", "%e %U %S %M"] + cmd
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
        fields = tf.read().strip().splitlines()[-1].split()
    wall, user, sys_, rss = float(fields[0]), float(fields[1]), float(fields[2]), int(fields[3])
    return p.returncode, wall, user + sys_, rss, p.stdout, p.stderr


def start_fleet(n, latency, restart, workdir, port_base, mix=None):
    d = os.path.join(workdir, f"fleet-{n}-{latency}-{restart}")
    os.makedirs(d, exist_ok=True)
    log = open(os.path.join(d, "simulate.log"), "w")
    # One loopback address per node (127.0.x.y:port_base): thousands of listeners without
    # colliding with the ephemeral port range the client's own connections use.
    p = subprocess.Popen(
        [BIN, "simulate", "--nodes", str(n), "--latency", latency, "--restart-time", restart,
         "--cluster-size", "3", "--loopback-ips", "--port-base", str(port_base), "--dir", d]
        + (["--profile-mix", mix] if mix else []),
        stdout=log, stderr=subprocess.STDOUT)
    inv = os.path.join(d, "inventory.toml")
    deadline = time.time() + 120
    while time.time() < deadline:
        if p.poll() is not None:
            sys.exit(f"simulate exited early, see {d}/simulate.log")
        with open(os.path.join(d, "simulate.log")) as f:
            if "press Ctrl-C" in f.read():
                return p, d, inv
        time.sleep(0.1)
    p.kill()
    sys.exit("simulate did not come up in 120 s")


def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()


BENCH_ROLLOUT = """[rollout]
batch = "10%"
per_cluster = 1
canary = 1
pause = "0s"
max_failures = "5%"
restart = "full"
health_timeout = "2m"
probe_from = "node"
only_if_changed = true
"""


def controls_without_dns():
    """The shipped playbook's controls and probes, without its [rollout] and without the
    DNS (domain posture) probes: the peers do the MTA read only, so every tool does the
    same work."""
    with open(os.path.join(ROOT, "playbooks", "backscatter.toml")) as f:
        text = f.read()
    text = text[: text.index("[rollout]")]
    blocks, block = [], ""
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            blocks.append(block)
            block = ""
        block += line
    blocks.append(block)
    return "".join(b for b in blocks if 'kind = "dns"' not in b)


def playbook(workdir):
    text = controls_without_dns() + BENCH_ROLLOUT
    p = os.path.join(workdir, "bench-playbook.toml")
    with open(p, "w") as f:
        f.write(text)
    return p


def ts(text):
    """RFC 3339 as jiff writes it (nanoseconds, Z) → seconds since the epoch."""
    import re
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?Z$", text)
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    return datetime.fromisoformat(m.group(1) + "+00:00").timestamp() + frac


def rollout_figures(report_dir):
    """Batches, and the time spent in them: per batch, from its first restart sent to its
    last health gate decided. Their sum is the `batches × (restart + gate)` of the target
    (pause is 0 here)."""
    with open(os.path.join(report_dir, "latest", "report.json")) as f:
        r = json.load(f)
    batches = {}
    for h in r["hosts"]:
        a = h.get("apply") or {}
        if a.get("batch") and a.get("restart") and a.get("gate"):
            b = batches.setdefault(a["batch"], [float("inf"), 0.0])
            b[0] = min(b[0], ts(a["restart"]["started_at"]))
            b[1] = max(b[1], ts(a["gate"]["finished_at"]))
    in_batches = sum(end - start for start, end in batches.values())
    return len(batches), in_batches


def scale(args, results):
    work = workdir(args, "cfleet-bench-")
    pb = playbook(work)
    base = 2222
    for n, lat, restart in [(n, lat, r) for n in args.sizes for lat in args.latencies for r in args.restarts]:
        sim, d, inv = start_fleet(n, lat, restart, work, base)
        try:
            rep = os.path.join(d, "reports")
            common = ["-i", inv, "--report-dir", rep, "--progress", "never", "-q",
                      "--forks", str(args.forks), "-p", pb]
            if restart == args.restarts[0]:  # restart times do not matter to check
                code, wall, cpu, rss, _, err = measured([BIN, "check"] + common)
                results.append(dict(part="scale", command="check", nodes=n, jvm_latency=lat, forks=args.forks,
                                    exit=code, wall_s=wall, cpu_s=cpu, peak_rss_mib=round(rss / 1024, 1)))
                print_row(results[-1])
            if "apply" in args.commands:
                # The simulated fleet is stock (`user=zimbra`): the fix is part of the remediation.
                code, wall, cpu, rss, _, err = measured([BIN, "apply", "--yes", "--fix-spawn-user"] + common)
                nb, in_batches = rollout_figures(rep)
                row = dict(part="scale", command="apply", nodes=n, jvm_latency=lat, forks=args.forks,
                           exit=code, wall_s=wall, cpu_s=cpu, peak_rss_mib=round(rss / 1024, 1),
                           batches=nb, restart=restart, restart_plus_gate_s=round(in_batches, 2),
                           wall_over_rollout=round(wall / in_batches, 3) if in_batches else None)
                results.append(row)
                print_row(row)
        finally:
            stop(sim)


# The backscatter hardening as an Ansible user would write it: idempotent (read, then
# change only what differs), one task per concern, the policy daemon guarded by its spawn
# user, restarts in `serial` batches with `max_fail_percentage` (the same rollout knobs
# the bench's carbonio-fleet playbook uses). `--check` runs the reads and skips the
# changes: the peer of `carbonio-fleet check`.
ANSIBLE_HARDENING = r"""- name: Carbonio backscatter hardening
  hosts: fleet
  gather_facts: false
  serial: "{{ fleet_batch | default('100%') }}"
  max_fail_percentage: 5
  become: true
  become_method: su
  become_flags: "-"
  become_user: zextras
  vars:
    desired:
      zimbraMtaEnableSmtpdPolicyd: "TRUE"
      zimbraMtaSmtpdRejectUnlistedRecipient: "yes"
      zimbraMtaSmtpdRejectUnlistedSender: "yes"
    policy_restriction: "check_policy_service unix:private/policy"
  tasks:
    - name: Read the global MTA attributes
      command: carbonio prov gcf {{ item }}
      loop: [zimbraMtaEnableSmtpdPolicyd, zimbraMtaSmtpdRejectUnlistedRecipient, zimbraMtaSmtpdRejectUnlistedSender, zimbraMtaRestriction]
      register: gcf
      changed_when: false
      check_mode: false
    - name: Read the policy service's spawn line
      command: grep -F zmpostfixpolicyd /opt/zextras/common/conf/master.cf.in
      register: spawn_line
      changed_when: false
      check_mode: false
    - name: Look up the spawn user
      command: getent passwd {{ spawn_line.stdout | regex_search('user=[^ ]+') | replace('user=', '') }}
      register: spawn_user
      changed_when: false
      failed_when: false
      check_mode: false
    - name: Read the effective Postfix parameters
      command: postconf smtpd_recipient_restrictions smtpd_reject_unlisted_recipient smtpd_reject_unlisted_sender
      register: effective
      changed_when: false
      check_mode: false
    - name: Restart where Postfix still runs an older configuration
      debug:
        msg: the effective configuration lags LDAP
      changed_when: true
      when: >-
        policy_restriction not in effective.stdout or
        'smtpd_reject_unlisted_recipient = yes' not in effective.stdout or
        'smtpd_reject_unlisted_sender = yes' not in effective.stdout
      notify: restart mta
    - name: Set the global attributes that differ
      command: carbonio prov mcf {{ item.item }} {{ desired[item.item] }}
      loop: "{{ gcf.results[:3] }}"
      loop_control:
        label: "{{ item.item }}"
      when:
        - "item.stdout.split(': ', 1)[-1] != desired[item.item]"
        - "item.item != 'zimbraMtaEnableSmtpdPolicyd' or spawn_user.rc == 0"
      notify: restart mta
    - name: Add the policy service to the MTA restrictions
      command: carbonio prov mcf +zimbraMtaRestriction "{{ policy_restriction }}"
      when:
        - "policy_restriction not in gcf.results[3].stdout"
        - "spawn_user.rc == 0"
      notify: restart mta
  handlers:
    - name: restart mta
      command: zmcontrol restart
"""

# The read-only sweep as a pyinfra user writes it: the tool's one batched zmprov read
# (the same attributes, PROV_JSON) and the same `postconf` keys (POSTCONF_JSON), as facts;
# run with --dry, nothing changes.
PYINFRA_CHECK = r"""import shlex

from pyinfra import host
from pyinfra.facts.server import Command

PROV = PROV_JSON
POSTCONF = POSTCONF_JSON

prov = host.get_fact(Command, command="su - zextras -c " + shlex.quote("h=" + host.data.server_name + "; " + PROV))
effective = host.get_fact(Command, command="su - zextras -c " + shlex.quote(POSTCONF))
"""

# The backscatter hardening as a pyinfra deploy, with the Ansible playbook's logic: read,
# change only what differs (the policy daemon only where its spawn user exists), restart
# the MTA where anything changed or the running configuration lags LDAP. pyinfra has no
# batch size (only --serial, one host at a time): `--parallel` hosts at once.
PYINFRA_HARDENING = r"""import re
import shlex

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import server

DESIRED = {
    "zimbraMtaEnableSmtpdPolicyd": "TRUE",
    "zimbraMtaSmtpdRejectUnlistedRecipient": "yes",
    "zimbraMtaSmtpdRejectUnlistedSender": "yes",
}
POLICY = "check_policy_service unix:private/policy"


def zx(cmd):
    return "su - zextras -c " + shlex.quote(cmd)


gcf = {}
for attr in list(DESIRED) + ["zimbraMtaRestriction"]:
    gcf[attr] = host.get_fact(Command, command=zx("carbonio prov gcf " + attr)) or ""
spawn_line = host.get_fact(Command, command=zx("grep -F zmpostfixpolicyd /opt/zextras/common/conf/master.cf.in || true")) or ""
m = re.search(r"user=([^ ]+)", spawn_line)
spawn_ok = bool(m) and bool(host.get_fact(Command, command="getent passwd " + shlex.quote(m.group(1).split(":")[0]) + " || true"))
effective = host.get_fact(Command, command=zx("postconf smtpd_recipient_restrictions smtpd_reject_unlisted_recipient smtpd_reject_unlisted_sender")) or ""

changes = []
for attr, want in DESIRED.items():
    have = gcf[attr].split(": ", 1)[-1].strip()
    if have != want and (attr != "zimbraMtaEnableSmtpdPolicyd" or spawn_ok):
        changes.append("carbonio prov mcf %s %s" % (attr, want))
if POLICY not in gcf["zimbraMtaRestriction"] and spawn_ok:
    changes.append("carbonio prov mcf +zimbraMtaRestriction " + shlex.quote(POLICY))
lagging = (POLICY not in effective or "smtpd_reject_unlisted_recipient = yes" not in effective
           or "smtpd_reject_unlisted_sender = yes" not in effective)
for c in changes:
    server.shell(name="Set " + c.split()[3], commands=[zx(c)])
if changes or lagging:
    server.shell(name="Restart the MTA", commands=[zx("zmcontrol restart")])
"""


def shq(text):
    return "'" + text.replace("'", "'\\''") + "'"


def hold_real_fleet(n, work, tag="", jvm_ms=0):
    """Starts the real-sshd fleet harness (an ignored test) and waits until it is up; every
    emulated JVM start there costs jvm_ms."""
    d = os.path.join(work, f"real-{n}{tag}")
    os.makedirs(d, exist_ok=True)
    log = open(os.path.join(d, "harness.log"), "w")
    env = dict(os.environ, CFLEET_BENCH_NODES=str(n), CFLEET_BENCH_DIR=d, CFLEET_BENCH_JVM_MS=str(jvm_ms))
    # Built first, outside the start-up deadline below: on a loaded 2-core machine the
    # release build of the harness alone took longer than that deadline.
    subprocess.run(["cargo", "test", "--release", "--quiet", "--test", "realfleet", "--no-run"], cwd=ROOT,
                   check=True, stdout=log, stderr=subprocess.STDOUT)
    p = subprocess.Popen(["cargo", "test", "--release", "--quiet", "--test", "realfleet", "--", "--ignored", "--exact",
                          "bench_hold_real_fleet", "--nocapture"], cwd=ROOT, env=env, stdout=log,
                         stderr=subprocess.STDOUT)
    deadline = time.time() + 900
    while time.time() < deadline:
        if p.poll() is not None:
            sys.exit(f"the real fleet harness exited, see {d}/harness.log")
        if os.path.exists(os.path.join(d, "ready")):
            with open(os.path.join(d, "ready")) as f:
                return p, d, f.read().strip()
        time.sleep(0.2)
    p.kill()
    sys.exit("the real fleet did not come up")


def hosts_of(inventory):
    """[(name, address, port, cluster)] of the fleet's inventory.toml, in order."""
    import re
    with open(inventory) as f:
        text = f.read()
    out = []
    for block in text.split("[[hosts]]")[1:]:
        field = lambda k: re.search(rf'^{k} = "?([^"\n]*)"?$', block, re.M).group(1)
        out.append((field("name"), field("address"), int(field("port")), field("cluster")))
    return out


def write_peer_files(d, fleet_dir):
    """Ansible's and pyinfra's inventories and config for the real fleet in fleet_dir, into
    d. Returns the fleet's (inventory.toml, known_hosts, client key, hosts)."""
    inv = os.path.join(fleet_dir, "inventory.toml")
    kh = os.path.join(fleet_dir, "known_hosts")
    key = os.path.join(fleet_dir, "id_ed25519")
    hosts = hosts_of(inv)
    with open(os.path.join(d, "hosts.ini"), "w") as f:
        f.write("[fleet]\n")
        for name, addr, port, _ in hosts:
            f.write(f"{name} ansible_host={addr} ansible_port={port} server_name={name}\n")
        f.write(f"[fleet:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\n"
                f"ansible_ssh_common_args='-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes'\n"
                "ansible_python_interpreter=/usr/bin/python3\n")
    with open(os.path.join(d, "ansible.cfg"), "w") as f:
        # timeout: the connect timeout; Ansible's 10 s default lost hosts at load 15.
        f.write("[defaults]\nforks = 50\nhost_key_checking = True\ngathering = explicit\n"
                "timeout = 60\nallow_world_readable_tmpfiles = True\n"
                "[ssh_connection]\npipelining = True\ntransfer_method = piped\n"
                "ssh_args = -o ControlMaster=auto -o ControlPersist=60s\n")
    with open(os.path.join(d, "hardening.yml"), "w") as f:
        f.write(ANSIBLE_HARDENING)
    with open(os.path.join(d, "pyinfra_inventory.py"), "w") as f:
        f.write("fleet = [\n")
        for name, addr, port, cluster in hosts:
            f.write(f"    ({name!r}, {{'ssh_hostname': {addr!r}, 'ssh_port': {port}, 'ssh_user': 'root', "
                    f"'ssh_key': {key!r}, 'ssh_known_hosts_file': {kh!r}, "
                    f"'ssh_strict_host_key_checking': 'yes', 'server_name': {name!r}, "
                    f"'cluster': {cluster!r}}}),\n")
        f.write("]\n")
    with open(os.path.join(d, "pyinfra_hardening.py"), "w") as f:
        f.write(PYINFRA_HARDENING)
    return inv, kh, key, hosts


def venv_tool(name, package):
    """A tool from the bench's own venv (its PyPI package installed once)."""
    venv = os.path.join(os.path.expanduser("~"), ".cache", "carbonio-fleet-bench-venv")
    tool = os.path.join(venv, "bin", name)
    if not os.path.exists(tool):
        if not os.path.exists(os.path.join(venv, "bin", "pip")):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", package], check=True)
    return tool


def ensure_ansible():
    """ansible-playbook from a venv of its own (ansible-core from PyPI, installed once)."""
    return venv_tool("ansible-playbook", "ansible-core")


def ensure_pyinfra():
    return venv_tool("pyinfra", "pyinfra")


def c_unescape(s):
    """A string as strace prints it (C escapes) → its text."""
    out, i = bytearray(), 0
    simple = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, '"': 34, "\\": 92, "'": 39}
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = s[i + 1]
        if n in simple:
            out.append(simple[n])
            i += 2
        elif n == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            j = i + 1
            while j < len(s) and j < i + 4 and s[j] in "01234567":
                j += 1
            out.append(int(s[i + 1:j], 8))
            i = j
    return out.decode("utf-8", "replace")


def capture_tool_command(inv, pb, d, fleet_dir, first):
    """The tool's exact remote gather command, as the first node's sshd runs it, and the
    script its `su - zextras -c` runs: strace on that sshd while carbonio-fleet checks
    that one node. Both are the same for every node (the server name is read there)."""
    import re
    cfg = os.path.join(fleet_dir, "nodes", first, "sshd_config")
    pid = None
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            # sshd rewrites its title (`sshd: /usr/sbin/sshd -D … -f CONFIG [listener] …`).
            raw = b" ".join(argv)
            if b"sshd" in argv[0] and cfg.encode() in raw:
                pid = p
                break
    if pid is None:
        sys.exit(f"no sshd with {cfg}")
    out = os.path.join(d, "strace.out")
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve", "-s", "1000000", "-o", out, "-p", pid])
    time.sleep(1.0)  # attaching
    subprocess.run([BIN, "check", "-i", inv, "-p", pb, "--limit", first, "--report-dir",
                    os.path.join(d, "capture"), "--progress", "never", "-q"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    st.terminate()
    st.wait(timeout=30)
    scripts = []
    with open(out) as f:
        for line in f:
            m = re.search(r'execve\("[^"]*", \["[^"]*", "-c", "((?:[^"\\]|\\.)*)"\]', line)
            if m:
                scripts.append(c_unescape(m.group(1)))
    # sshd runs root's shell with the whole command; su then runs zextras's with the
    # product's gather (the one holding the prov batch).
    outer = next(x for x in scripts if "getent passwd" in x and "su - " in x)
    inner = next(x for x in scripts if "| zmprov" in x and "su - " not in x)
    return outer, inner


def prov_and_postconf(inner):
    """The tool's prov pipeline (`printf … | zmprov -l`, naming the server `$h`) and its
    `postconf NAMES`, cut out of its gather script."""
    import re
    prov = re.search(r"prov'; (printf '%s\\n' .*?\| zmprov[^;]*);", inner, re.S).group(1)
    postconf = re.search(r"(postconf [^;]*?) 2>&1;", inner).group(1)
    return prov, postconf


def floor_file(d, name, hosts, kh, key, command_of):
    """One ssh command line per host (for `xargs -d '\\n' -n1 sh -c`). A command that
    spans lines is sent from a file (`"$(cat FILE)"`: the same bytes as one argument)."""
    path = os.path.join(d, name)
    with open(path, "w") as f:
        for i, (hname, addr, port, _) in enumerate(hosts):
            command = command_of(hname)
            if "\n" in command:
                held = os.path.join(d, f"{name}.{i}.sh")
                with open(held, "w") as c:
                    c.write(command)
                arg = f'"$(cat {shq(held)})"'
            else:
                arg = shq(command)
            f.write(f"ssh -o KexAlgorithms=curve25519-sha256 -o BatchMode=yes -o StrictHostKeyChecking=yes "
                    f"-o UserKnownHostsFile={kh} -i {key} -p {port} root@{addr} {arg} > /dev/null\n")
    return path


def peer(args, results):
    ansible = ensure_ansible()
    pyinfra = ensure_pyinfra()
    work = workdir(args, "cfleet-peer-")
    pb = playbook(work)
    forks = str(args.peer_forks)
    for n in args.peer_sizes:
        harness, d, fleet_dir = hold_real_fleet(n, work, jvm_ms=args.peer_jvm_ms)
        try:
            inv, kh, key, hosts = write_peer_files(d, fleet_dir)
            outer, inner = capture_tool_command(inv, pb, d, fleet_dir, hosts[0][0])
            prov, postconf = prov_and_postconf(inner)
            with open(os.path.join(d, "tool-command.sh"), "w") as f:
                f.write(outer)
            with open(os.path.join(d, "pyinfra_check.py"), "w") as f:
                f.write(PYINFRA_CHECK.replace("PROV_JSON", json.dumps(prov))
                        .replace("POSTCONF_JSON", json.dumps(postconf)))
            cmd_floor = floor_file(d, "floor-command.cmds", hosts, kh, key, lambda _h: outer)
            prov_floor = floor_file(d, "floor-zmprov.cmds", hosts, kh, key,
                                    lambda h: "su - zextras -c " + shq(f"h={h}; {prov}"))
            xargs = lambda f: ["bash", "-c", f"xargs -P {forks} -d '\\n' -n 1 sh -c < {shq(f)}"]
            tools = {
                "carbonio-fleet": [BIN, "check", "-i", inv, "-p", pb, "--report-dir", os.path.join(d, "reports"),
                                   "--progress", "never", "-q", "--forks", forks],
                "floor: tool's command": xargs(cmd_floor),
                "floor: zmprov only": xargs(prov_floor),
                "pyinfra": [pyinfra, "-y", "--dry", "--parallel", forks,
                            os.path.join(d, "pyinfra_inventory.py"), os.path.join(d, "pyinfra_check.py")],
                # Each tool as it ships: carbonio-fleet's --forks 512, pyinfra's own
                # parallelism (20 per CPU core, at most the hosts: pyinfra/api/state.py).
                "carbonio-fleet (default)": [BIN, "check", "-i", inv, "-p", pb, "--report-dir",
                                             os.path.join(d, "reports-default"), "--progress", "never", "-q"],
                "pyinfra (default)": [pyinfra, "-y", "--dry", os.path.join(d, "pyinfra_inventory.py"),
                                      os.path.join(d, "pyinfra_check.py")],
                # The hardening as an Ansible user writes it, dry-run: what `check` answers.
                "ansible": [ansible, "-i", os.path.join(d, "hosts.ini"), "--check",
                            os.path.join(d, "hardening.yml")],
            }
            walls = {t: [] for t in tools}
            cpus = {t: [] for t in tools}
            for rep in range(args.reps):
                for tool, cmd in tools.items():
                    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(d, "ansible.cfg"))
                    code, wall, cpu, rss, out, err = measured(cmd, env=env, cwd=d)
                    with open(os.path.join(d, f"{tool.replace(' ', '_').replace(':', '').replace(chr(39), '')}-{rep + 1}.log"), "w") as f:
                        f.write(out + err)
                    ok = code in (0, 2) if tool.startswith("carbonio-fleet") else code == 0
                    row = dict(part="peer", command="check", tool=tool, nodes=n, rep=rep + 1, exit=code, ok=ok,
                               jvm_ms=args.peer_jvm_ms, forks=args.peer_forks,
                               wall_s=wall, cpu_s=cpu, peak_rss_mib=round(rss / 1024, 1))
                    results.append(row)
                    print(f"peer   {tool:<22} {n:>4} nodes  rep {rep + 1}  exit {code}  wall {wall:>7.2f} s  "
                          f"cpu {cpu:>6.2f} s  rss {row['peak_rss_mib']:>6.1f} MiB", flush=True)
                    if not ok:
                        print((out + err)[-2000:], file=sys.stderr)
                    walls[tool].append(wall)
                    cpus[tool].append(cpu)
            med = {t: sorted(w)[len(w) // 2] for t, w in walls.items()}
            cpu = {t: round(sorted(c)[len(c) // 2], 2) for t, c in cpus.items()}
            fleet = med["carbonio-fleet"]
            ratio = dict(part="peer-ratio", nodes=n, median_wall_s=med, median_cpu_s=cpu,
                         fleet_over_command_floor=round(fleet / med["floor: tool's command"], 2),
                         fleet_over_zmprov_floor=round(fleet / med["floor: zmprov only"], 2),
                         pyinfra_over_fleet=round(med["pyinfra"] / fleet, 2),
                         pyinfra_default_over_fleet_default=round(
                             med["pyinfra (default)"] / med["carbonio-fleet (default)"], 2),
                         ansible_over_fleet=round(med["ansible"] / fleet, 1),
                         ansible_cpu_over_fleet_cpu=round(cpu["ansible"] / max(cpu["carbonio-fleet"], 0.01), 1))
            results.append(ratio)
            print(f"peer   {n} nodes: median wall {med}; median tool CPU {cpu}\n"
                  f"peer   {n} nodes: carbonio-fleet / floor (tool's command) = {ratio['fleet_over_command_floor']}x, "
                  f"/ floor (zmprov only) = {ratio['fleet_over_zmprov_floor']}x; "
                  f"pyinfra / carbonio-fleet = {ratio['pyinfra_over_fleet']}x "
                  f"(each at its default: {ratio['pyinfra_default_over_fleet_default']}x); "
                  f"ansible / carbonio-fleet = {ratio['ansible_over_fleet']}x", flush=True)
        finally:
            open(os.path.join(d, "stop"), "w").close()
            harness.wait(timeout=120)


def restart_figures(fleet_dir):
    """From the real fleet's restart logs: restarts done, and the most restarts of one
    cluster that overlapped (the `per_cluster` safety limit; 1 keeps a cluster serving)."""
    spans = {}
    for node in os.listdir(os.path.join(fleet_dir, "nodes")):
        log = os.path.join(fleet_dir, "nodes", node, "state", "restarts.jsonl")
        if not os.path.exists(log):
            continue
        with open(log) as f:
            for line in f:
                r = json.loads(line)
                if r.get("ended_ms"):
                    spans.setdefault(r["cluster"], []).append((r["started_ms"], r["ended_ms"]))
    worst = 0
    for s in spans.values():
        events = sorted([(a, 1) for a, _ in s] + [(b, -1) for _, b in s])
        level = 0
        for _, step in events:
            level += step
            worst = max(worst, level)
    return sum(len(s) for s in spans.values()), worst


def peer_apply(args, results):
    """Remediation side by side: each tool gets a FRESH non-compliant real fleet per rep
    (apply changes the nodes), with the same rollout knobs (10% batches, at most 5% of
    hosts failing); carbonio-fleet also gates each host and keeps one node per cluster
    restarting, which Ansible's `serial` cannot express. The end state is read by one
    carbonio-fleet check (exit 0 = every host compliant)."""
    ansible = ensure_ansible()
    pyinfra = ensure_pyinfra()
    work = workdir(args, "cfleet-peer-apply-")
    pb = playbook(work)
    for n in args.peer_sizes:
        for rep in range(args.reps):
            for tool in ("carbonio-fleet", "ansible", "pyinfra"):
                harness, d, fleet_dir = hold_real_fleet(n, work, f"-{tool}-{rep + 1}", jvm_ms=args.peer_jvm_ms)
                try:
                    inv, _, _, _ = write_peer_files(d, fleet_dir)
                    cmd = {
                        "carbonio-fleet": [BIN, "apply", "--yes", "-i", inv, "-p", pb, "--report-dir",
                                           os.path.join(d, "reports"), "--progress", "never", "-q",
                                           "--forks", str(args.peer_forks)],
                        "ansible": [ansible, "-i", os.path.join(d, "hosts.ini"), "-e", "fleet_batch=10%",
                                    os.path.join(d, "hardening.yml")],
                        "pyinfra": [pyinfra, "-y", "--parallel", str(args.peer_forks),
                                    os.path.join(d, "pyinfra_inventory.py"), os.path.join(d, "pyinfra_hardening.py")],
                    }[tool]
                    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(d, "ansible.cfg"))
                    code, wall, cpu, rss, out, err = measured(cmd, env=env, cwd=d)
                    with open(os.path.join(d, f"{tool}-apply.log"), "w") as f:
                        f.write(out + err)
                    verify = subprocess.run([BIN, "check", "-i", inv, "-p", pb, "--report-dir",
                                             os.path.join(d, "verify"), "--progress", "never", "-q"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
                    restarts, per_cluster = restart_figures(fleet_dir)
                    row = dict(part="peer-apply", command="apply", tool=tool, nodes=n, rep=rep + 1, exit=code,
                               jvm_ms=args.peer_jvm_ms,
                               wall_s=wall, cpu_s=cpu, peak_rss_mib=round(rss / 1024, 1), restarts=restarts,
                               max_restarting_per_cluster=per_cluster, check_after_exit=verify)
                    results.append(row)
                    print(f"apply  {tool:<15} {n:>4} nodes  rep {rep + 1}  exit {code}  wall {wall:>7.2f} s  "
                          f"cpu {cpu:>6.2f} s  rss {row['peak_rss_mib']:>6.1f} MiB  restarts {restarts}  "
                          f"max restarting per cluster {per_cluster}  check after: exit {verify}", flush=True)
                finally:
                    open(os.path.join(d, "stop"), "w").close()
                    harness.wait(timeout=120)


APPLY_TERMS_ROLLOUT = """[rollout]
batch = "25%"
per_cluster = 1
canary = 1
pause = "{pause}"
max_failures = "10%"
health_timeout = "2m"
probe_from = "node"
only_if_changed = true
"""


def journal_terms(report_dir):
    """Apply's wall time in its terms, from the journal's timestamps: per host stage write
    and read-back (stage-started → staged), render wait (restart-started → rendered, the
    configrewrite and the reads until the files hold the values), reload (rendered →
    restarted), gate (restarted → gate-passed); per batch the pause before the next one;
    per cluster the promotion (promotion-started → promoted)."""
    path = os.path.join(report_dir, "latest", "journal.jsonl")
    with open(os.path.join(report_dir, "latest", "report.json")) as f:
        report = json.load(f)
    batch_of = {h["name"]: (h.get("apply") or {}).get("batch") for h in report["hosts"]}
    steps = {}
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            steps.setdefault(e["host"], {})[e["step"]] = ts(e["at"])
    pairs = {"stage": ("stage-started", "staged"), "render": ("restart-started", "rendered"),
             "reload": ("rendered", "restarted"), "gate": ("restarted", "gate-passed"),
             "promotion": ("promotion-started", "promoted")}
    terms = {k: [] for k in pairs}
    for host, st in steps.items():
        for k, (a, b) in pairs.items():
            if a in st and b in st:
                terms[k].append(st[b] - st[a])
    batches = {}
    for host, st in steps.items():
        b = batch_of.get(host)
        if b and "stage-started" in st and "gate-passed" in st:
            lo, hi = batches.get(b, (float("inf"), 0.0))
            batches[b] = (min(lo, st["stage-started"]), max(hi, st["gate-passed"]))
    order = sorted(batches)
    pauses = [batches[n][0] - batches[p][1] for p, n in zip(order, order[1:])]
    in_batches = sum(hi - lo for lo, hi in batches.values())
    # Promotions run concurrently (one per cluster): their wall time, first start to last end.
    starts = [st["promotion-started"] for st in steps.values() if "promotion-started" in st]
    ends = [st["promoted"] for st in steps.values() if "promoted" in st]
    promotion_wall = (max(ends) - min(starts)) if starts and ends else 0.0
    return terms, len(order), in_batches, pauses, promotion_wall


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def apply_terms(args, results):
    """apply on a fresh simulated fleet with realistic program costs (every JVM start
    costs --latencies' first value): its wall time and each term of
    batches x (stage write + read-back + render wait + reload + gate + pause) + promotion."""
    work = workdir(args, "cfleet-apply-terms-")
    pb = os.path.join(work, "apply-terms.toml")
    with open(pb, "w") as f:
        f.write(controls_without_dns() + APPLY_TERMS_ROLLOUT.format(pause=args.pause))
    latency = args.latencies[0]
    for n in args.terms_sizes:
        proc, d, inv = start_fleet(n, latency, "1s", work, 2222,
                                   mix=f"legacy+non-compliant+spawn-user-fixed={n // 2},"
                                       f"systemd+non-compliant+spawn-user-fixed={n - n // 2}")
        reports = os.path.join(d, "reports")
        try:
            code, wall, cpu, rss, _, err = measured(
                [BIN, "apply", "-i", inv, "-p", pb, "--yes", "--report-dir", reports,
                 "--progress", "never", "--forks", str(args.forks)])
        finally:
            stop(proc)
        terms, nbatches, in_batches, pauses, promotion_wall = journal_terms(reports)
        row = {"part": "terms", "command": "apply", "nodes": n, "jvm_latency": latency,
               "forks": args.forks, "exit": code, "wall_s": wall, "cpu_s": cpu,
               "peak_rss_mib": rss / 1024, "batches": nbatches,
               "in_batches_s": round(in_batches, 2), "pauses_s": round(sum(pauses), 2),
               "median_s": {k: round(median(v), 2) for k, v in terms.items()},
               "promotion_s": round(promotion_wall, 2),
               "rest_s": round(wall - in_batches - sum(pauses) - promotion_wall, 2)}
        m = row["median_s"]
        # The bound: batches x (stage write and read-back + render wait + reload +
        # gate) + the pauses between batches + promotion, with 10% slack for the rest
        # (the first gather, the plan and the proof reads).
        per_batch = sum(m.get(k, 0.0) for k in ("stage", "render", "reload", "gate"))
        bound = nbatches * per_batch + sum(pauses) + promotion_wall
        row["bound_s"] = round(bound, 2)
        row["wall_over_bound"] = round(wall / bound, 3) if bound else None
        results.append(row)
        print(f"terms  apply {n:>6} nodes  jvm {latency:<4} exit {code}  wall {wall:7.2f} s  cpu {cpu:6.2f} s  "
              f"rss {rss / 1024:6.1f} MiB  batches {nbatches}  per host (median): stage {m['stage']} s + "
              f"render {m['render']} s + reload {m['reload']} s + gate {m['gate']} s; in batches "
              f"{row['in_batches_s']} s + pauses {row['pauses_s']} s + promotion {row['promotion_s']} s "
              f"+ gather, plan and proof {row['rest_s']} s; bound {row['bound_s']} s, "
              f"wall / bound = {row['wall_over_bound']} (goal <= 1.10)", flush=True)


def workdir(args, prefix):
    """A temp dir for one part's fleets and logs; removed at exit unless --keep (a 5,000-node
    fleet's state is ~150 MiB)."""
    import atexit, shutil
    d = tempfile.mkdtemp(prefix=prefix)
    if args.keep:
        print(f"# {prefix.strip('-')}: fleets and logs kept in {d}", flush=True)
    else:
        atexit.register(shutil.rmtree, d, True)
    return d


def cdp_paint_times(chromium, page, reps):
    """Loads `page` `reps` times in one headless Chromium and returns the medians (ms) of
    first-paint, first-contentful-paint, DOMContentLoaded and load, as the page's own
    Performance API measured them. The protocol runs over a pipe (fds 3 and 4,
    NUL-terminated JSON), so nothing listens on a port."""
    import select
    r_to_chrome, w_to_chrome = os.pipe()
    r_from_chrome, w_from_chrome = os.pipe()
    profile = tempfile.mkdtemp(prefix="cfleet-chromium-")
    # Chromium reads commands on fd 3 and writes replies on fd 4. The child's copies are
    # first moved above 10, so placing them on 3 and 4 cannot clobber one another.
    import fcntl
    hi_r = fcntl.fcntl(r_to_chrome, fcntl.F_DUPFD, 10)
    hi_w = fcntl.fcntl(w_from_chrome, fcntl.F_DUPFD, 10)

    def child_fds():
        os.dup2(hi_r, 3)
        os.dup2(hi_w, 4)
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=child_fds,
        pass_fds=(3, 4, hi_r, hi_w))
    for fd in (r_to_chrome, w_from_chrome, hi_r, hi_w):
        os.close(fd)
    buf = b""
    next_id = [0]
    events = []

    def read_message(deadline):
        nonlocal buf
        while b"\0" not in buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([r_from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(r_from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            buf += chunk
        msg, buf = buf.split(b"\0", 1)
        return json.loads(msg)

    def call(method, params=None, session=None, timeout=60):
        next_id[0] += 1
        msg = {"id": next_id[0], "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(w_to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = read_message(deadline)
            if m.get("id") == next_id[0]:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            events.append(m)

    def wait_event(name, timeout=60):
        deadline = time.time() + timeout
        while True:
            for i, m in enumerate(events):
                if m.get("method") == name:
                    return events.pop(i)
            events.append(read_message(deadline))

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        call("Page.enable", session=session)
        samples = []
        for _ in range(reps):
            events.clear()
            call("Page.navigate", {"url": "file://" + page}, session=session)
            wait_event("Page.loadEventFired")
            expr = ("(() => { const p = n => (performance.getEntriesByName(n)[0] || {}).startTime;"
                    " const t = performance.getEntriesByType('navigation')[0];"
                    " return JSON.stringify({fp: p('first-paint'), fcp: p('first-contentful-paint'),"
                    " dcl: t.domContentLoadedEventEnd, load: t.loadEventEnd,"
                    " nodes: document.getElementsByTagName('*').length}); })()")
            deadline = time.time() + 10
            while True:
                v = json.loads(call("Runtime.evaluate", {"expression": expr}, session=session)["result"]["value"])
                if v.get("fcp") is not None and v.get("load"):
                    break
                if time.time() > deadline:
                    raise TimeoutError(f"no paint entry for {page}: {v}")
                time.sleep(0.05)  # polling the page's own clock, not timing anything
            samples.append(v)
        med = lambda k: round(median([x[k] for x in samples]), 1)
        return dict(first_paint_ms=med("fp"), fcp_ms=med("fcp"), dcl_ms=med("dcl"),
                    load_ms=med("load"), dom_elements=samples[-1]["nodes"])
    finally:
        proc.kill()
        proc.wait()
        os.close(w_to_chrome)
        os.close(r_from_chrome)
        import shutil
        shutil.rmtree(profile, True)


def diversified(report):
    """The report of a stock fleet (every host in one drift state) reshaped the way a real
    sweep of a managed fleet looks: 5% unreachable, 20% drift (two states), the rest
    compliant, hosts spread over 40 customers. Values come from the real report's own
    results, so the HTML renders real evidence strings."""
    import copy
    r = copy.deepcopy(report)
    r["labels"] = ["customer"]
    for i, h in enumerate(r["hosts"]):
        h.setdefault("vars", {})["customer"] = f"Customer {i % 40:02d}"
        slot = i % 20
        if slot == 0:
            h["status"] = "failed"
            h["error"] = {"kind": "unreachable",
                          "message": f"failed to connect to `{h['name']}` ({h['address']}:{h['port']}): connection timed out after 10s"}
            h["controls"], h["probes"], h["findings"] = [], [], []
        elif slot <= 2:
            pass  # the stock drift state, as gathered
        elif slot <= 4:
            # A second drift state: the policy daemon enabled by hand, the rest not.
            for c in h["controls"]:
                if c["id"] == "BS-01":
                    c["verdict"], c["actual"] = "compliant", "TRUE"
        else:
            h["status"] = "compliant"
            h["findings"] = []
            for c in h["controls"]:
                if c["verdict"] != "not-applicable":
                    c["verdict"] = "compliant"
                    c["actual"] = c["expected"].replace("= ", "").replace("contains ", "")
            for p in h["probes"]:
                if p["verdict"] != "not-applicable":
                    p["verdict"] = "pass"
    counts = {}
    for h in r["hosts"]:
        counts[h["status"]] = counts.get(h["status"], 0) + 1
    r["summary"] = {"hosts": len(r["hosts"]), "compliant": counts.get("compliant", 0),
                    "drift": counts.get("drift", 0), "restart_pending": counts.get("restart-pending", 0),
                    "failed": counts.get("failed", 0), "not_attempted": counts.get("not-attempted", 0)}
    return r


def report_html(args, results):
    import shutil
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        sys.exit("report-html needs chromium (apt-get install -y chromium)")
    work = workdir(args, "cfleet-bench-html-")
    pb = playbook(work)
    n = args.html_nodes
    sim, d, inv = start_fleet(n, "0s", "1s", work, 2222)
    try:
        rep = os.path.join(d, "reports")
        code, wall, cpu, rss, _, err = measured(
            [BIN, "check", "-i", inv, "--report-dir", rep, "--progress", "never", "-q", "-p", pb])
    finally:
        stop(sim)
    run = os.path.realpath(os.path.join(rep, "latest"))
    with open(os.path.join(run, "report.json")) as f:
        stock = json.load(f)
    cases = [("stock (one drift state)", os.path.join(run, "report.html"))]
    mixed = diversified(stock)
    halves = []
    for k in range(2):
        part = dict(mixed)
        part["hosts"] = mixed["hosts"][k::2]
        path = os.path.join(work, f"half-{k}.json")
        with open(path, "w") as f:
            json.dump(part, f)
        halves.append(path)
    out = os.path.join(work, "mixed-reports")
    subprocess.run([BIN, "report", "merge", *halves, "--report-dir", out], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases.append(("mixed (5% failed, 20% drift, 40 customers)",
                  os.path.join(os.path.realpath(os.path.join(out, "latest")), "report.html")))
    for name, page in cases:
        size = os.path.getsize(page)
        t = cdp_paint_times(chromium, page, args.reps)
        row = dict(part="report-html", case=name, nodes=n, bytes=size, mib=round(size / 2**20, 3), **t)
        results.append(row)
        print(f"report-html {n} hosts, {name:<44} {size / 2**20:6.3f} MiB  first paint {t['first_paint_ms']:>6.1f} ms  "
              f"FCP {t['fcp_ms']:>6.1f} ms  DOMContentLoaded {t['dcl_ms']:>6.1f} ms  load {t['load_ms']:>6.1f} ms  "
              f"({t['dom_elements']} elements, median of {args.reps})", flush=True)
        if args.keep:
            shutil.copy(page, os.path.join(work, name.split()[0] + "-report.html"))


def print_row(r):
    extra = (f"  restart={r['restart']} batches={r['batches']} restart+gate={r['restart_plus_gate_s']} s "
             f"wall/rollout={r['wall_over_rollout']}") if "batches" in r else ""
    print(f"{r['part']:<6} {r['command']:<6} {r['nodes']:>6} nodes  jvm {r['jvm_latency']:<4} forks {r['forks']:<4} "
          f"exit {r['exit']}  wall {r['wall_s']:>7.2f} s  cpu {r['cpu_s']:>6.2f} s  rss {r['peak_rss_mib']:>6.1f} MiB{extra}",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["scale"])
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--latencies", default="0s,1s")
    ap.add_argument("--forks", type=int, default=512, help="scale: the tool's --forks (its default)")
    ap.add_argument("--peer-forks", type=int, default=50,
                    help="peer, peer-apply: every tool's parallelism (xargs -P, pyinfra --parallel, ansible forks 50)")
    ap.add_argument("--peer-jvm-ms", type=int, default=1000,
                    help="peer, peer-apply: what one emulated JVM start costs on the real nodes (a zmprov is two)")
    ap.add_argument("--restarts", default="1s",
                    help="simulated restart times for apply (a real `zmcontrol restart` takes minutes)")
    ap.add_argument("--commands", default="check,apply")
    ap.add_argument("--peer-sizes", default="50,200")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--terms-sizes", default="30,120",
                    help="apply-terms: fleet sizes (clusters of 3)")
    ap.add_argument("--pause", default="2s", help="apply-terms: [rollout] pause")
    ap.add_argument("--html-nodes", type=int, default=1000, help="report-html: fleet size")
    ap.add_argument("--keep", action="store_true", help="keep the fleets' directories and the per-run logs")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results.json"))
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.latencies = args.latencies.split(",")
    args.restarts = args.restarts.split(",")
    args.commands = args.commands.split(",")
    args.peer_sizes = [int(s) for s in args.peer_sizes.split(",")]
    args.terms_sizes = [int(s) for s in args.terms_sizes.split(",")]
    results = []
    print(f"# carbonio-fleet bench {datetime.now().isoformat(timespec='seconds')}  "
          f"({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})")
    if "scale" in args.parts:
        scale(args, results)
    if "peer" in args.parts:
        peer(args, results)
    if "peer-apply" in args.parts:
        peer_apply(args, results)
    if "apply-terms" in args.parts:
        apply_terms(args, results)
    if "report-html" in args.parts:
        report_html(args, results)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
