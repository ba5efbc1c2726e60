#!/usr/bin/env python3
"""User-space instructions per operation, hawser against nginx, counted by callgrind.

    python3 bench/instructions.py                        # plain HTTP GETs and ws:// handshakes
    python3 bench/instructions.py --scenario http --baseline OLD/hawser --top 30
    python3 bench/instructions.py --keep /tmp/dumps   # then callgrind_annotate --inclusive=yes --tree=caller

CPU time on a shared machine moves by more than a change of a few per cent; the instructions a
proxy executes for the same work do not. Each proxy runs alone under `valgrind --tool=callgrind`
(the load generator and the echo backend on the other core, as `run.py` starts them), is warmed
up for two seconds, has its counters zeroed (`callgrind_control -z`), serves N seconds of load
and is dumped (`callgrind_control -d`): the instructions in that window ÷ the operations the
load generator completed. Only user space is counted (the kernel's share per operation is the
same for every proxy, see docs/benchmarks.md); valgrind serialises the process and runs it some
50× slower, so the figures describe work, not speed. `memcpy` done with `rep movsb` is counted
per iteration under valgrind: large copies weigh more here than they cost. `--top N` prints the N
functions of hawser's own cost (inclusive of nothing they call) per operation.

Needs valgrind (installed from Debian when missing), nginx and wrk (as `run.py`).
"""

import argparse
import collections
import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import run


def ensure_valgrind():
    if not shutil.which("callgrind_control"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True, stdout=subprocess.DEVNULL)


def load(scenario, port, seconds, wsload):
    """Runs the load from the client core; returns the operations completed."""
    if scenario == "http":
        out = subprocess.run(["taskset", "-c", run.CLIENT_CORE, "wrk", "-t1", "-c100", f"-d{seconds}s", "-H",
                              f"Host: {run.HOST}", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
        return int(re.search(r"(\d+) requests in", out).group(1))
    out = subprocess.run(["taskset", "-c", run.CLIENT_CORE, str(wsload), "handshakes", "--addr", f"127.0.0.1:{port}",
                          "--seconds", str(seconds), "--connections", "50"],
                         capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    return json.loads(out.strip().splitlines()[-1])["handshakes"]


def hawser_command(binary, work, echo_port, cert, key, port):
    manifests = work / "manifests"
    manifests.mkdir()
    (manifests / "tls.yaml").write_text(run.hawser_secret(cert, key))
    (manifests / "bench.yaml").write_text(run.hawser_manifests(echo_port, 0))
    return [str(binary), "run", "--manifests", str(manifests), "--http-addr", f"127.0.0.1:{port}",
            "--https-addr", f"127.0.0.1:{run.free_port()}", "--admin-addr", f"127.0.0.1:{run.free_port()}"]


def nginx_command(work, echo_port, cert, key, port):
    conf = work / "nginx.conf"
    # One process serving, so that callgrind sees all of the work.
    conf.write_text("master_process off;\n" + run.nginx_conf(work, port, run.free_port(), echo_port, cert, key, 0))
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-e", str(work / "error.log")]


def counted(command, env, port, scenario, seconds, wsload, out):
    """Starts `command` under callgrind; returns (operations, the dump of the measured window)."""
    process = subprocess.Popen(["taskset", "-c", run.PROXY_CORE, "valgrind", "--tool=callgrind",
                                f"--callgrind-out-file={out}", *command],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run.wait_port(port, timeout=120)
        load(scenario, port, 2, wsload)
        subprocess.run(["callgrind_control", "-z", str(process.pid)], check=True, capture_output=True)
        operations = load(scenario, port, seconds, wsload)
        subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # The window's dump is the first numbered part; the unnumbered file is the rest of the run.
    return operations, Path(f"{out}.1")


def own_costs(dump):
    """(total instructions, {function: instructions in it, not in what it calls})."""
    names, costs, function, total, after_call = {}, collections.Counter(), None, 0, False

    def name(text):
        match = re.match(r"\((\d+)\)(?:\s+(.*))?", text)
        if not match:
            return text
        if match.group(2):
            names[match.group(1)] = match.group(2)
        return names.get(match.group(1), match.group(1))

    for line in dump.read_text().splitlines():
        if line.startswith("fn="):
            function, after_call = name(line[3:]), False
        elif line.startswith("cfn="):
            name(line[4:])
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            fields = line.split()
            if len(fields) < 2:
                continue
            if after_call:  # the inclusive cost of a call, counted in the callee
                after_call = False
                continue
            costs[function] += int(fields[1])
            total += int(fields[1])
    return total, costs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["http", "handshakes", "both"], default="both")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--baseline", help="another hawser binary, counted as `before`")
    parser.add_argument("--top", type=int, default=0, help="print hawser's N costliest functions per operation")
    parser.add_argument("--keep", type=Path, help="copy each callgrind dump into this directory, for "
                        "`callgrind_annotate --inclusive=yes --tree=caller`")
    args = parser.parse_args()
    run.ensure_tools()
    ensure_valgrind()
    hawser, wsload = run.build()
    targets = [("hawser", hawser)] + ([("before", Path(args.baseline))] if args.baseline else []) + [("nginx", None)]
    scenarios = ["http", "handshakes"] if args.scenario == "both" else [args.scenario]
    with tempfile.TemporaryDirectory(prefix="hawser-instructions-") as work:
        work = Path(work)
        cert, key = run.certificate(work)
        echo_port = run.free_port()
        echo = run.pinned(run.CLIENT_CORE, [str(wsload), "echo", "--addr", f"127.0.0.1:{echo_port}"],
                          stdout=subprocess.DEVNULL)
        try:
            run.wait_port(echo_port)
            rows = []
            for scenario in scenarios:
                for name, binary in targets:
                    place = Path(tempfile.mkdtemp(dir=work))
                    port = run.free_port()
                    if binary:
                        command, env = hawser_command(binary, place, echo_port, cert, key, port), run.hawser_env(False)
                    else:
                        command, env = nginx_command(place, echo_port, cert, key, port), None
                    operations, dump = counted(command, env, port, scenario, args.seconds, wsload, place / "callgrind.out")
                    total, costs = own_costs(dump)
                    if args.keep:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        shutil.copy(dump, args.keep / f"{scenario}-{name}.callgrind")
                    rows.append((scenario, name, operations, total / max(operations, 1)))
                    print(f"{scenario:10} {name:7} {operations:7} operations  {total / max(operations, 1):9,.0f} instructions each",
                          flush=True)
                    if args.top and name == "hawser":
                        for function, cost in costs.most_common(args.top):
                            print(f"    {cost / max(operations, 1):8,.0f}  {function[:140]}")
        finally:
            echo.terminate()
            echo.wait()
    print(f"\n{time.strftime('%Y-%m-%d')}, user-space instructions per operation (callgrind)")
    print("| scenario | " + " | ".join(name for name, _ in targets) + " | hawser ÷ nginx |")
    print("|---|" + "---|" * (len(targets) + 1))
    for scenario in scenarios:
        figures = {name: per for s, name, _, per in rows if s == scenario}
        cells = " | ".join(f"{figures[name]:,.0f}" for name, _ in targets)
        print(f"| {scenario} | {cells} | {figures['hawser'] / figures['nginx']:.2f} |")


if __name__ == "__main__":
    main()
