#!/usr/bin/env python3
"""The Autobahn TestSuite (the standard WebSocket conformance suite) through hawser: every case
that passes against the echo backend directly must pass through the proxy too.

    python3 e2e/autobahn.py [--hawser target/debug/hawser] [--all] [--parallelism N] [--reports DIR]

The suite is run by kosoku (PyPI `kosoku`, pinned; pip-installed into this Python when missing),
a runner of the Autobahn case files. As `kosoku -m fuzzingclient [-x CASE]... -p N -o DIR
HOST:PORT` it is the CLIENT and HOST:PORT the server under test; `-p` is how many cases run at
once (not a port); each case is one connection to `GET /` with `Host: HOST:PORT`; it writes
Autobahn's reports to DIR (default reports/clients): `index.json` with each case's behavior,
close behavior and close code, and one JSON report per case (expected and received events, the
wire log). It exits 1 when a case fails. The script runs it twice, with the same cases:
  1. DIRECTLY against `hawser echo` (the built-in echo backend);
  2. THROUGH `hawser run` in standalone mode on a manifests directory whose WebSocketRoute sends
     every host and path to that echo with the route defaults (no message limit, 1 h idle
     timeout, keepalive pings only after 30 s of silence), once /readyz answers 200.

What it asserts is the comparison, not the echo's own conformance. A case passes in Autobahn's
sense when its behavior is OK, NON-STRICT or INFORMATIONAL and its close behavior OK or
INFORMATIONAL. One line per case group (1.*, 2.*, ...): `FAIL` when a case of the group passes
directly but not through hawser, or is missing from a run (the cases are named with both
results, followed by what the report of the first of each kind says), `ok` otherwise. Notes
under an `ok` line name cases that fail both ways (the echo's own gaps, not hawser's: with --all
the 12.* and 13.* permessage-deflate cases are UNIMPLEMENTED, the echo negotiating no
compression) and cases whose details differ while both pass: hawser follows the frames in the
tunnel and itself fails a connection that breaks the protocol (reserved opcode, bad control
frame, stray continuation...) with 1002 where the echo would have dropped it, so the close code
and sometimes OK versus NON-STRICT differ from the direct run.

Cases: all but 9.* (large messages, performance), 12.* and 13.* (compression) by default, 247
cases; --all runs all 517. Measured on a 2-core machine with the debug build, 2 cases at a time:
about 5 s per pass and 10 s in all by default, 17 s in all with --all.
Only 127.0.0.1 is used. Prints one line per check, then `N passed, M failed`; exits 1 on failure.
"""

import argparse
import collections
import importlib.metadata
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from manifests import ECHO_SERVICE  # e2e/manifests.py, beside this script
from processes import print_checks  # e2e/processes.py, beside this script

KOSOKU_VERSION = "0.1.0"
DEFAULT_EXCLUDE = ["9.*", "12.*", "13.*"]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}
STARTUP_SECONDS = 30
SUITE_SECONDS = 900

# Every host, every path (no hostnames, no matches: PathPrefix /) to the echo, with the
# WebSocketRoute defaults: no message limit, 1 h idle timeout, pings only after 30 s of silence.
MANIFESTS = ECHO_SERVICE + """apiVersion: hawser.dev/v1alpha1
kind: WebSocketRoute
metadata: {name: autobahn}
spec:
  rules:
  - backends: [{name: echo, port: http}]
"""


def ensure_kosoku():
    try:
        version = importlib.metadata.version("kosoku")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != KOSOKU_VERSION:
        print(f"installing kosoku=={KOSOKU_VERSION} from PyPI", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"kosoku=={KOSOKU_VERSION}"], check=True)


class Hawser:
    """A `hawser` child process with the addresses its JSON `listening` lines name; its output
    is drained by a thread (the last lines are kept for error messages)."""

    def __init__(self, args, listeners):
        env = dict(os.environ, HAWSER_SHUTDOWN_DELAY="0s")
        self.process = subprocess.Popen([*args, "--log-format", "json"], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, errors="replace")
        self.tail = collections.deque(maxlen=20)
        self.addrs = {}
        events = queue.Queue()
        threading.Thread(target=self._drain, args=(events,), daemon=True).start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not set(listeners) <= set(self.addrs):
            try:
                event = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                event = None
            if event is None:
                self.stop()
                tail = "\n".join(self.tail)
                raise SystemExit(f"{' '.join(args[1:2])}: no `listening` line for {listeners}:\n{tail}")
            self.addrs[event["listener"]] = event["addr"]

    def _drain(self, events):
        for line in self.process.stdout:
            self.tail.append(line.rstrip())
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("message") == "listening":
                events.put(event)
        events.put(None)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_ready(admin_addr, hawser):
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if hawser.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://{admin_addr}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    tail = "\n".join(hawser.tail)
    raise SystemExit(f"hawser run: /readyz never answered 200:\n{tail}")


def run_suite(label, address, outdir, args):
    """Runs kosoku against `address`; returns {case id: index entry} and the seconds it took."""
    command = [sys.executable, "-c", "from kosoku._cli import main; main()", "-m", "fuzzingclient",
               "-p", str(args.parallelism), "-o", str(outdir)]
    for pattern in [] if args.all else DEFAULT_EXCLUDE:
        command += ["-x", pattern]
    started = time.monotonic()
    done = subprocess.run([*command, address], capture_output=True, text=True, timeout=SUITE_SECONDS)
    seconds = time.monotonic() - started
    index_file = outdir / "index.json"
    if done.returncode not in (0, 1) or not index_file.exists():
        raise SystemExit(f"kosoku {label} exited with {done.returncode} and no report:\n{done.stdout}{done.stderr}")
    cases = {}
    for agent_cases in json.loads(index_file.read_text()).values():
        for case_id, entry in agent_cases.items():
            cases[case_id] = dict(entry, report=outdir / entry["reportfile"])
    return cases, seconds


def passes(entry):
    return entry["behavior"] in PASSING and entry["behaviorClose"] in PASSING_CLOSE


def outcome(entry):
    if entry is None:
        return "missing"
    code = entry["remoteCloseCode"]
    return f"{entry['behavior']}/{entry['behaviorClose']} ({'no close frame' if code is None else f'close {code}'})"


def sort_key(case_id):
    return [int(part) for part in case_id.split(".")]


def summary(label, cases, seconds):
    counts = collections.Counter(f"{e['behavior']}/{e['behaviorClose']}" for e in cases.values())
    passed = sum(passes(e) for e in cases.values())
    spread = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    return f"     {label}: {len(cases)} cases in {seconds:.1f} s, {passed} pass ({spread})"


def text(html):
    """A report's HTML snippet as one line of plain text, clipped."""
    plain = " ".join(re.sub(r"<[^>]+>", " ", html or "").split())
    return plain if len(plain) <= 200 else plain[:200] + " ..."


def report_details(case_id, entry):
    """What a case's JSON report says, for a regression."""
    try:
        report = json.loads(entry["report"].read_text())
    except (OSError, ValueError) as err:
        return [f"{case_id}: no report ({err})"]
    clip = lambda value: (lambda dump: dump if len(dump) <= 240 else dump[:240] + " ...")(json.dumps(value))
    return [
        f"{case_id} through hawser: {text(report.get('description'))}",
        f"  expectation: {text(report.get('expectation'))}",
        f"  result: {report.get('result')} | {report.get('resultClose')}",
        f"  expected: {clip(report.get('expected'))}; received: {clip(report.get('received'))}",
        f"  expectedClose: {clip(report.get('expectedClose'))}; remote close {report.get('remoteCloseCode')} "
        f"{report.get('remoteCloseReason')!r}, wasClean {report.get('wasClean')} ({report.get('wasNotCleanReason')}), "
        f"droppedByMe {report.get('droppedByMe')}, failedByMe {report.get('failedByMe')}",
    ]


def ranges(ids, order):
    """Case ids as text, runs of 3+ cases adjacent in the suite's order written `first..last`."""
    position = {case_id: n for n, case_id in enumerate(order)}
    runs = []
    for case_id in ids:
        if runs and position[case_id] == position[runs[-1][-1]] + 1:
            runs[-1].append(case_id)
        else:
            runs.append([case_id])
    return ", ".join(f"{run[0]}..{run[-1]}" if len(run) >= 3 else ", ".join(run) for run in runs)


def compare(direct, proxied):
    """One (ok, line, notes) per case group: FAIL when a case passes directly but not through
    hawser (or is missing from a run); cases failing both ways and differing details are notes."""
    order = sorted(set(direct) | set(proxied), key=sort_key)
    groups = collections.defaultdict(list)
    for case_id in order:
        groups[case_id.split(".")[0]].append(case_id)
    checks = []
    for group, ids in groups.items():
        regressions, notable = collections.defaultdict(list), collections.defaultdict(list)
        for case_id in ids:
            d, p = direct.get(case_id), proxied.get(case_id)
            pair = f"directly {outcome(d)}, through hawser {outcome(p)}"
            if d is None or p is None or (passes(d) and not passes(p)):
                regressions[pair].append(case_id)
            elif not passes(d) and not passes(p):
                alike = f"alike, {outcome(d)}" if outcome(d) == outcome(p) else pair
                notable["fail both ways (the echo's, not hawser's)", alike].append(case_id)
            elif not passes(d):
                notable["fail directly, pass through hawser", pair].append(case_id)
            elif outcome(d) != outcome(p):
                notable["pass both ways, details differ", pair].append(case_id)
        name = f"{group}.* ({len(ids)} case{'' if len(ids) == 1 else 's'})"
        if regressions:
            count = sum(len(cases) for pair, cases in regressions.items() if "missing" not in pair)
            lost = sum(len(cases) for pair, cases in regressions.items() if "missing" in pair)
            what = ", ".join(filter(None, [count and f"{count} pass directly but not through hawser",
                                           lost and f"{lost} missing from a run"]))
            notes = [f"{ranges(cases, order)}: {pair}" for pair, cases in regressions.items()]
            for cases in regressions.values():  # the report of the first case of each kind
                if cases[0] in proxied:
                    notes += report_details(cases[0], proxied[cases[0]])
            checks.append((False, f"{name}: {what}", notes))
            continue
        notes = [f"{kind}: {ranges(cases, order)}: {pair}" for (kind, pair), cases in notable.items()]
        checks.append((True, f"{name}: every case that passes directly passes through hawser", notes))
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hawser", default="target/debug/hawser")
    parser.add_argument("--all", action="store_true", help="run every case, 9.*, 12.* and 13.* included")
    parser.add_argument("--parallelism", type=int, default=2, help="cases kosoku runs at once (its -p)")
    parser.add_argument("--reports", help="keep the Autobahn reports in this directory (direct/, hawser/)")
    args = parser.parse_args()
    binary = str(Path(args.hawser).resolve())
    ensure_kosoku()

    workdir = Path(tempfile.mkdtemp(prefix="hawser-autobahn-"))
    reports = Path(args.reports).resolve() if args.reports else workdir / "reports"
    processes = []
    started = time.monotonic()
    try:
        echo = Hawser([binary, "echo", "--addr", "127.0.0.1:0"], ["echo"])
        processes.append(echo)
        echo_addr = echo.addrs["echo"]
        direct, direct_seconds = run_suite("direct", echo_addr, reports / "direct", args)

        manifests = workdir / "manifests"
        manifests.mkdir()
        (manifests / "autobahn.yaml").write_text(MANIFESTS.replace("ECHO_PORT", echo_addr.rsplit(":", 1)[1]))
        hawser = Hawser([binary, "run", "--manifests", str(manifests), "--http-addr", "127.0.0.1:0",
                         "--https-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"],
                        ["proxy", "proxy-tls", "admin"])
        processes.append(hawser)
        wait_ready(hawser.addrs["admin"], hawser)
        proxied, proxied_seconds = run_suite("through hawser", hawser.addrs["proxy"], reports / "hawser", args)
        checks = compare(direct, proxied)  # reads the reports, before they are removed
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    selection = "the whole suite" if args.all else f"every case but {', '.join(DEFAULT_EXCLUDE)}"
    print(f"     kosoku {KOSOKU_VERSION} (Autobahn TestSuite cases), {selection}, {args.parallelism} at a time")
    print(summary(f"directly against hawser echo {echo_addr}", direct, direct_seconds))
    print(summary(f"through hawser run {hawser.addrs['proxy']}", proxied, proxied_seconds))
    passed, failed = print_checks(checks)
    if args.reports:
        print(f"     reports: {reports}/direct/index.json, {reports}/hawser/index.json")
    print(f"     {time.monotonic() - started:.1f} s in all")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
