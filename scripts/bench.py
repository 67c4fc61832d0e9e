#!/usr/bin/env python3
"""carbonio-fleet benchmark (issue #9). Not a test: wall time on a shared machine is noisy.

  scripts/bench [scale] [--sizes 100,1000,5000] [--latencies 0s,1s] [--forks 64]

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


def start_fleet(n, latency, restart, workdir, port_base):
    d = os.path.join(workdir, f"fleet-{n}-{latency}")
    os.makedirs(d, exist_ok=True)
    log = open(os.path.join(d, "simulate.log"), "w")
    # One loopback address per node (127.0.x.y:port_base): thousands of listeners without
    # colliding with the ephemeral port range the client's own connections use.
    p = subprocess.Popen(
        [BIN, "simulate", "--nodes", str(n), "--latency", latency, "--restart-time", restart,
         "--cluster-size", "3", "--loopback-ips", "--port-base", str(port_base), "--dir", d],
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
restart = "auto"
health_timeout = "2m"
probe_from = "node"
only_if_changed = true
"""


def playbook(workdir):
    with open(os.path.join(ROOT, "playbooks", "backscatter.toml")) as f:
        text = f.read()
    text = text[: text.index("[rollout]")] + BENCH_ROLLOUT
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
    work = tempfile.mkdtemp(prefix="cfleet-bench-")
    pb = playbook(work)
    base = 2222
    for n in args.sizes:
        for lat in args.latencies:
            restart = "1s"
            sim, d, inv = start_fleet(n, lat, restart, work, base)
            try:
                rep = os.path.join(d, "reports")
                common = ["-i", inv, "--report-dir", rep, "--progress", "never", "-q",
                          "--forks", str(args.forks), "-p", pb]
                code, wall, cpu, rss, _, err = measured([BIN, "check"] + common)
                results.append(dict(part="scale", command="check", nodes=n, jvm_latency=lat,
                                    forks=args.forks, exit=code, wall_s=wall, cpu_s=cpu, peak_rss_mib=round(rss / 1024, 1)))
                print_row(results[-1])
                if "apply" in args.commands:
                    code, wall, cpu, rss, _, err = measured([BIN, "apply", "--yes"] + common)
                    nb, in_batches = rollout_figures(rep)
                    row = dict(part="scale", command="apply", nodes=n, jvm_latency=lat, forks=args.forks,
                               exit=code, wall_s=wall, cpu_s=cpu, peak_rss_mib=round(rss / 1024, 1),
                               batches=nb, restart_s=1.0, restart_plus_gate_s=round(in_batches, 2),
                               wall_over_rollout=round(wall / in_batches, 3) if in_batches else None)
                    results.append(row)
                    print_row(row)
            finally:
                stop(sim)


def print_row(r):
    extra = (f"  batches={r['batches']} restart+gate={r['restart_plus_gate_s']} s "
             f"wall/rollout={r['wall_over_rollout']}") if "batches" in r else ""
    print(f"{r['part']:<6} {r['command']:<6} {r['nodes']:>6} nodes  jvm {r['jvm_latency']:<4} forks {r['forks']:<4} "
          f"exit {r['exit']}  wall {r['wall_s']:>7.2f} s  cpu {r['cpu_s']:>6.2f} s  rss {r['peak_rss_mib']:>6.1f} MiB{extra}",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["scale"])
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--latencies", default="0s,1s")
    ap.add_argument("--forks", type=int, default=64)
    ap.add_argument("--commands", default="check,apply")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results.json"))
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.latencies = args.latencies.split(",")
    args.commands = args.commands.split(",")
    results = []
    print(f"# carbonio-fleet bench {datetime.now().isoformat(timespec='seconds')}  "
          f"({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})")
    if "scale" in args.parts:
        scale(args, results)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
