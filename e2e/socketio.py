#!/usr/bin/env python3
"""Cookie session affinity with real socket.io through hawser: socket.io clients (Node.js,
default transports: HTTP long-polling first, then the upgrade to WebSocket) reach several
socket.io servers through the real `hawser` binary in standalone mode and must each stay on
one server, which only works when hawser issues an affinity cookie and honours it (socket.io
sessions live in one server process; a polling request that lands on another server gets
`400 Session ID unknown`). Then the servers go away one by one and their clients must move.

    python3 e2e/socketio.py [--hawser target/debug/hawser] [--route ingress|websocketroute|both]
                            [--clients 20] [--servers 3]

It runs twice (`--route both`, the default): once with an Ingress annotated
`nginx.ingress.kubernetes.io/affinity: cookie` (cookie INGRESSCOOKIE) and
`session-cookie-change-on-failure: "true"`, once with a WebSocketRoute rule with
`sessionAffinity: {cookie: {name: chat-affinity, changeOnFailure: true}}` (without change on
failure, ingress-nginx's default, a cookie keeps naming an endpoint that refuses). Both route
`/socket.io` (Prefix) to the Service `chat`, whose EndpointSlices (one per server, since they
differ only by port) list socket.io servers a, b and c on 127.0.0.1. A server greets each new
connection with `hello` (its id) and answers `echo` with the ack `{server, data}`. 20 clients
connect at once. Each run checks, one line each:
  1. every client connects once, upgrades to WebSocket and completes 5 echoes, never dropped;
  2. every client saw exactly one server (its hellos and echo replies);
  3. every client holds the affinity cookie;
  4. every server got clients;
  5. server c leaves the way Kubernetes removes a Pod: its EndpointSlice file is deleted and,
     once hawser's table (/debug/routes) no longer lists it, the process is killed. Its clients
     reconnect with a cookie naming an endpoint hawser no longer has: they must land on another
     server and echo there, their cookie must be replaced, the other clients must not drop;
  6. server b crashes: the process is killed while its EndpointSlice stays listed (standalone
     mode has no readiness probe). Its clients reconnect with a cookie naming an endpoint that
     refuses connections: hawser must choose another endpoint and replace the cookie; again
     they must echo there and the other clients must not drop.
Steps 5 and 6 need 3 servers: `--servers 2` runs step 5 only, `--servers 1` neither (for
debugging: without affinity everything but step 3 then passes).

A browser keeps its cookies across reconnections; socket.io-client in Node keeps them
(`withCredentials: true`) in a jar per engine.io connection and starts with an empty one on
every reconnection, so the client script gives each client one jar for all its connections.

Needs: node and npm (Debian `nodejs npm`, apt-get installed when missing); the npm packages
socket.io and socket.io-client 4.8.1, installed once into ~/.cache/hawser-ci/socketio-4.8.1.
Only 127.0.0.1 is used. Takes about 8 s (debug build, 2 cores). Prints one line per check,
then `N passed, M failed`; exits 1 on failure, with what the servers and hawser saw.
"""

import argparse
import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from processes import free_port, print_checks, stop, wait_for_port  # e2e/processes.py, beside this script

SOCKETIO_VERSION = "4.8.1"
NODE_CACHE = Path.home() / ".cache" / "hawser-ci" / f"socketio-{SOCKETIO_VERSION}"
SERVER_IDS = "abcdefgh"
STARTUP_SECONDS = 15
PHASE_SECONDS = 12  # the client script bounds each phase itself; this is how long we wait for it
RELOAD_SECONDS = 10
ECHOES = 5

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: chat}
spec: {ports: [{name: http, port: 80}]}
"""

SLICE = """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: chat-ID, labels: {kubernetes.io/service-name: chat}}
addressType: IPv4
ports: [{name: http, port: PORT}]
endpoints: [{addresses: ["127.0.0.1"]}]
"""

ROUTES = {
    "ingress": ("INGRESSCOOKIE", """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: chat
  annotations:
    nginx.ingress.kubernetes.io/affinity: cookie
    nginx.ingress.kubernetes.io/session-cookie-change-on-failure: "true"
spec:
  ingressClassName: hawser
  rules:
  - http:
      paths:
      - path: /socket.io
        pathType: Prefix
        backend: {service: {name: chat, port: {name: http}}}
"""),
    "websocketroute": ("chat-affinity", """apiVersion: hawser.dev/v1alpha1
kind: WebSocketRoute
metadata: {name: chat}
spec:
  rules:
  - matches: [{path: {value: /socket.io}}]
    backends: [{name: chat, port: http}]
    sessionAffinity: {cookie: {name: chat-affinity, changeOnFailure: true}}
"""),
}

# A socket.io server with the default transports on a plain http server: `node server.js PORT ID`.
SERVER_JS = r"""
const http = require("http");
const { Server } = require("socket.io");
const [port, id] = process.argv.slice(2);
const say = (event) => console.log(JSON.stringify(event));
const httpServer = http.createServer();
const io = new Server(httpServer);
io.on("connection", (socket) => {
  say({ event: "connection", transport: socket.conn.transport.name });
  socket.emit("hello", id);
  socket.on("echo", (data, ack) => ack({ server: id, data }));
});
io.engine.on("connection_error", (err) => say({ event: "connection_error", message: err.message }));
httpServer.listen(Number(port), "127.0.0.1", () => say({ event: "listening", port: Number(port) }));
"""

# The clients: `node clients.js URL COUNT COOKIE NODE_MODULES`. Phase 1 runs at once; each later
# phase when a line `{"phase": NAME, "dead": ID}` arrives on stdin (after the server is gone).
# Every phase prints one JSON line: the outcome of each client.
CLIENTS_JS = r"""
"use strict";
const path = require("path");
const readline = require("readline");
const { io } = require("socket.io-client");
const [url, countArg, cookieName, modules] = process.argv.slice(2);
const ECHOES = Number(process.env.ECHOES);
const PHASE_MS = Number(process.env.PHASE_MS);
const started = Date.now();
const clock = () => ((Date.now() - started) / 1000).toFixed(2) + "s";

// engine.io-client keeps cookies (withCredentials: true) in a jar it creates for each engine.io
// connection, and socket.io-client opens a new connection, so an empty jar, on every reconnect.
// A browser keeps its cookies: each client gets one jar for all its connections. The jar is
// made by the exported createCookieJar, which engine.io-client looks up at each call.
const globals = require(path.join(modules, "engine.io-client/build/cjs/globals.node.js"));
const newJar = globals.createCookieJar;
let jarForNextConnection = null;
globals.createCookieJar = () => jarForNextConnection || newJar();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(what, ms, done, abort) {
  const deadline = Date.now() + ms;
  while (!done()) {
    const why = abort && abort();
    if (why) throw new Error(why);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms / 1000} s`);
    await sleep(20);
  }
}
function withDeadline(promise, ms) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`phase deadline (${ms / 1000} s)`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
function describe(x) {
  if (x === undefined || x === null) return "";
  if (typeof x !== "object") return String(x);
  const parts = [x.message, x.description].filter(
    (p) => typeof p === "string" || typeof p === "number");
  return parts.join(" ");
}

function client(n) {
  const jar = newJar();
  const socket = io(url, { path: "/socket.io", withCredentials: true, forceNew: true, autoConnect: false });
  const manager = socket.io;
  const open = manager.open.bind(manager);
  manager.open = (fn) => {
    jarForNextConnection = jar;
    try { return open(fn); } finally { jarForNextConnection = null; }
  };
  const c = { n, socket, jar, hellos: [], disconnects: [], events: [], jarProblem: false };
  const note = (what) => c.events.push(`${clock()} ${what}`);
  socket.on("hello", (id) => { c.hellos.push(id); note(`hello from ${id}`); });
  socket.on("disconnect", (reason, details) => {
    const why = [reason, describe(details)].filter(Boolean).join(": ");
    c.disconnects.push(why);
    note(`disconnected (${why})`);
  });
  socket.on("connect_error", (err) => note(`connect error (${describe(err)})`));
  manager.on("open", () => {
    const engine = manager.engine;
    if (engine._cookieJar !== jar) c.jarProblem = true;
    note(`engine.io open over ${engine.transport.name}`);
    engine.on("upgrade", (transport) => note(`upgraded to ${transport.name}`));
    engine.on("upgradeError", (err) => note(`upgrade error (${describe(err)})`));
  });
  return c;
}

const cookieOf = (c) => {
  for (const [name, cookie] of c.jar.cookies) if (name === cookieName) return cookie.value;
  return null;
};
const onWebSocket = (c) =>
  c.socket.connected && c.socket.io.engine && c.socket.io.engine.transport.name === "websocket";

async function echo(c, k) {
  const data = `client ${c.n} echo ${k}`;
  const reply = await c.socket.timeout(3000).emitWithAck("echo", data);
  if (!reply || reply.data !== data) throw new Error(`echo ${k} answered ${JSON.stringify(reply)}`);
  return reply.server;
}

async function phase1(c) {
  const dropped = () => c.disconnects.length ? `disconnected (${c.disconnects[0]})` : null;
  c.echoes = [];
  c.socket.connect();
  await until("hello", 8000, () => c.hellos.length > 0, dropped);
  await until("upgrade to websocket", 8000, () => onWebSocket(c), dropped);
  for (let k = 0; k < ECHOES; k++) {
    c.echoes.push(await echo(c, k));
    const why = dropped();
    if (why) throw new Error(why);
  }
}

async function failover(c, dead, mark) {
  c.echoServer = null;
  c.moved = mark.server === dead;
  if (c.moved) {
    const reconnected = () => c.hellos.length > mark.hellos && c.socket.connected;
    await until("reconnection", PHASE_MS - 2000, reconnected);
    await until("upgrade to websocket", 4000, () => onWebSocket(c));
  }
  c.echoServer = await echo(c, `after ${dead}`);
}

function mark(c) {
  const server = c.hellos[c.hellos.length - 1] || null;
  return { hellos: c.hellos.length, disconnects: c.disconnects.length, server, cookie: cookieOf(c) };
}

async function run(clients, phase, body) {
  const begun = Date.now();
  const outcomes = await Promise.allSettled(clients.map((c) => withDeadline(body(c), PHASE_MS)));
  const marks = clients.map(mark);
  const failure = (outcome) =>
    outcome.status === "fulfilled" ? null : String((outcome.reason && outcome.reason.message) || outcome.reason);
  const report = clients.map((c, i) => ({
    n: c.n,
    ok: outcomes[i].status === "fulfilled",
    error: failure(outcomes[i]),
    hellos: c.hellos.slice(c.before ? c.before.hellos : 0),
    disconnects: c.disconnects.slice(c.before ? c.before.disconnects : 0),
    echoes: c.echoes,
    echoServer: c.echoServer || null,
    moved: c.moved || false,
    from: c.before ? c.before.server : null,
    cookieBefore: c.before ? c.before.cookie : null,
    cookie: marks[i].cookie,
    cookies: Array.from(c.jar.cookies, ([name]) => name),
    transport: c.socket.io.engine ? c.socket.io.engine.transport.name : null,
    jarProblem: c.jarProblem,
    events: c.events.slice(-12),
  }));
  clients.forEach((c, i) => { c.before = marks[i]; c.events = []; });
  console.log(JSON.stringify({ phase, seconds: (Date.now() - begun) / 1000, clients: report }));
}

async function main() {
  const clients = Array.from({ length: Number(countArg) }, (_, n) => client(n));
  await run(clients, "connect", phase1);
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  for (;;) {
    const { value, done } = await lines.next();
    if (done) break;
    const order = JSON.parse(value);
    if (!order.dead) break;
    await run(clients, order.phase, (c) => failover(c, order.dead, c.before));
  }
  clients.forEach((c) => c.socket.disconnect());
  process.exit(0);
}
main().catch((err) => { console.error(err); process.exit(2); });
"""






def ensure_node():
    """node and npm (Debian packages when missing), then the pinned socket.io packages in the cache."""
    if not shutil.which("node") or not shutil.which("npm"):
        print("installing nodejs and npm from Debian", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nodejs", "npm"], check=True, env=env,
                       stdout=subprocess.DEVNULL, timeout=600)
    modules = NODE_CACHE / "node_modules"

    def installed(package):
        try:
            return json.loads((modules / package / "package.json").read_text())["version"] == SOCKETIO_VERSION
        except (OSError, ValueError, KeyError):
            return False

    if not (installed("socket.io") and installed("socket.io-client")):
        print(f"installing socket.io@{SOCKETIO_VERSION} and socket.io-client@{SOCKETIO_VERSION} into {NODE_CACHE}",
              flush=True)
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(NODE_CACHE), "--no-audit", "--no-fund", "--silent",
                        f"socket.io@{SOCKETIO_VERSION}", f"socket.io-client@{SOCKETIO_VERSION}"],
                       check=True, timeout=600)
    return modules


class Clients:
    """The client script: its stdout lines (one JSON object per phase) come through a queue."""

    def __init__(self, command, env, stderr):
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=stderr, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self, what):
        deadline = time.monotonic() + PHASE_SECONDS
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise Failure(f"the clients reported nothing on `{what}` within {PHASE_SECONDS} s")
            if line is None:
                raise Failure(f"the client script exited ({self.process.wait()}) before reporting `{what}`")
            try:
                return json.loads(line)
            except ValueError:
                continue

    def send(self, order):
        try:
            self.process.stdin.write(json.dumps(order) + "\n")
            self.process.stdin.flush()
        except OSError:
            raise Failure(f"the client script exited ({self.process.wait()}) before `{order}`")


class Failure(Exception):
    """A run that cannot go on: the message says why."""




def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""
    except (urllib.error.URLError, OSError):
        return None, ""


def unlisted(routes_url, port):
    """Whether hawser's live table (/debug/routes) has no endpoint on `port` any more."""
    status, table = get(routes_url)
    return status == 200 and f'"127.0.0.1:{port}"' not in table


def wait_until(what, seconds, condition, process):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Failure(f"hawser exited ({process.returncode}) while waiting for {what}")
        if condition():
            return
        time.sleep(0.1)
    raise Failure(f"no {what} within {seconds} s")


def clients_list(ns):
    return ", ".join(map(str, ns)) if len(ns) <= 12 else ", ".join(map(str, ns[:12])) + ", ..."


def client_lines(clients, limit=4):
    """What the first failing clients went through, as notes."""
    notes = []
    for c in clients[:limit]:
        notes.append(f"client {c['n']}: {c['error'] or 'see events'}; events: {' | '.join(c['events']) or 'none'}")
    if len(clients) > limit:
        notes.append(f"... and {len(clients) - limit} more")
    return notes


def connect_checks(label, report, cookie_name, servers):
    """Phase 1: every client connected once, upgraded, echoed on one server, holds the cookie."""
    clients = report["clients"]
    checks = []
    failed = [c for c in clients if not c["ok"] or c["disconnects"] or len(c["hellos"]) != 1]
    checks.append((not failed, f"{label}: {len(clients)} clients each connect once, upgrade to websocket and "
                               f"complete {ECHOES} echoes ({report['seconds']:.1f} s)",
                   [f"{len(failed)} of {len(clients)} failed (clients {clients_list([c['n'] for c in failed])})"]
                   + client_lines(failed) if failed else []))
    wandering = [c for c in clients if len(set(c["hellos"]) | set(c["echoes"])) != 1]
    checks.append((not wandering, f"{label}: every client saw exactly one server",
                   [f"{len(wandering)} of {len(clients)} did not"]
                   + [f"client {c['n']}: hellos from {','.join(c['hellos']) or 'none'}, "
                      f"echoes from {','.join(c['echoes']) or 'none'}" for c in wandering[:4]] if wandering else []))
    without = [c for c in clients if not c["cookie"]]
    seen = sorted({name for c in clients for name in c["cookies"]})
    notes = [f"{len(without)} of {len(clients)} clients hold no cookie {cookie_name} "
             f"(cookies they hold: {', '.join(seen) or 'none'})"] if without else []
    if any(c["jarProblem"] for c in clients):
        notes.append("the client script's cookie jar was not used by engine.io-client: the script needs fixing")
    checks.append((not notes, f"{label}: hawser issued the affinity cookie {cookie_name} to every client", notes))
    if len(servers) > 1:
        share = collections.Counter(c["hellos"][0] for c in clients if c["hellos"])
        spread = ", ".join(f"{s}: {share[s]}" for s in servers)
        empty = [s for s in servers if not share[s]]
        checks.append((not empty, f"{label}: every server got clients ({spread})",
                       [f"server {s} got none" for s in empty]))
    return checks


def failover_checks(label, report, what, dead, cookie_name):
    """A failover phase: the dead server's clients moved and got a new cookie; the others stayed."""
    clients = report["clients"]
    movers = [c for c in clients if c["moved"]]
    stayers = [c for c in clients if not c["moved"]]
    lost = [c for c in movers if not c["ok"] or not c["hellos"] or c["hellos"][-1] == dead
            or c["echoServer"] in (None, dead)]
    checks = [(bool(movers) and not lost,
               f"{label}: {what}: its {len(movers)} clients reconnect to another server and echo there "
               f"({report['seconds']:.1f} s)",
               (["no client was on it"] if not movers else [])
               + ([f"{len(lost)} of {len(movers)} did not (clients {clients_list([c['n'] for c in lost])})"]
                  + client_lines(lost) if lost else []))]
    stale = [c for c in movers if c not in lost and (not c["cookie"] or c["cookie"] == c["cookieBefore"])]
    checks.append((bool(movers) and not lost and not stale,
                   f"{label}: {what}: their cookie {cookie_name} was replaced",
                   [f"client {c['n']}: {cookie_name} was {c['cookieBefore']!r}, now {c['cookie']!r}"
                    for c in stale[:6]]
                   + (["(not checked: they did not reconnect)"] if lost else [])))
    if any(c["jarProblem"] for c in movers):
        checks[0][2].append("the client script's cookie jar was not used by engine.io-client: the script needs fixing")
        checks[0] = (False, *checks[0][1:])
    moved_anyway = [c for c in stayers if not c["ok"] or c["disconnects"] or c["echoServer"] != c["from"]]
    checks.append((not moved_anyway,
                   f"{label}: {what}: the other {len(stayers)} clients stay connected where they were",
                   [f"client {c['n']} (on {c['from']}): {c['error'] or ''} disconnects: {c['disconnects']}, "
                    f"echo from {c['echoServer']}" for c in moved_anyway[:6]]))
    return checks


def diagnostics(server_logs, hawser_log):
    """What the servers and hawser saw, for a failed run."""
    notes = []
    for sid, path in server_logs.items():
        errors, connections = collections.Counter(), 0
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "connection_error":
                errors[event.get("message")] += 1
            connections += event.get("event") == "connection"
        spread = ", ".join(f"{n} × {message!r}" for message, n in errors.most_common()) or "none"
        notes.append(f"server {sid}: {connections} socket.io connections; engine.io connection errors: {spread}")
    answers = collections.Counter()
    for line in hawser_log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("target") == "hawser::access" and event.get("message") == "tunnel closed":
            answers[f"tunnel to {event.get('endpoint')} closed by {event.get('closed_by')}"] += 1
        elif event.get("target") == "hawser::access":
            kind = "upgrade" if event.get("upgrade") else event.get("method")
            error = f" ({event['error']})" if event.get("error") else ""
            answers[f"{kind} {event.get('status')} from {event.get('endpoint')}{error}"] += 1
    common = "; ".join(f"{n} × {what}" for what, n in answers.most_common(8))
    notes.append(f"hawser access log: {common or 'empty'}")
    return notes


def run(label, args, binary, modules):
    """One pass with one kind of route; returns its checks."""
    cookie_name, route = ROUTES[label]
    workdir = Path(tempfile.mkdtemp(prefix=f"hawser-socketio-{label}-"))
    processes = []
    checks = []
    server_logs = {}
    try:
        (workdir / "server.js").write_text(SERVER_JS)
        (workdir / "clients.js").write_text(CLIENTS_JS)
        node_env = dict(os.environ, NODE_PATH=str(modules), ECHOES=str(ECHOES),
                        PHASE_MS=str((PHASE_SECONDS - 2) * 1000))
        servers = {}
        for sid in SERVER_IDS[:args.servers]:
            port = free_port()
            server_logs[sid] = workdir / f"server-{sid}.log"
            with open(server_logs[sid], "w") as log:
                process = subprocess.Popen(["node", str(workdir / "server.js"), str(port), sid], env=node_env,
                                           stdout=log, stderr=subprocess.STDOUT)
            processes.append(process)
            servers[sid] = (port, process)

        manifests = workdir / "manifests"
        manifests.mkdir()
        (manifests / "chat.yaml").write_text(SERVICE + "---\n" + route)
        for sid, (port, _) in servers.items():
            (manifests / f"slice-{sid}.yaml").write_text(SLICE.replace("ID", sid).replace("PORT", str(port)))
        http_port, https_port, admin_port = (free_port() for _ in range(3))
        hawser_log = workdir / "hawser.log"
        with open(hawser_log, "w") as log:
            hawser = subprocess.Popen([binary, "run", "--manifests", str(manifests),
                                       "--http-addr", f"127.0.0.1:{http_port}",
                                       "--https-addr", f"127.0.0.1:{https_port}",
                                       "--admin-addr", f"127.0.0.1:{admin_port}", "--log-format", "json"],
                                      env=dict(os.environ, HAWSER_SHUTDOWN_DELAY="0s"),
                                      stdout=log, stderr=subprocess.STDOUT)
        processes.append(hawser)
        for port, process in [*servers.values(), (http_port, hawser)]:
            wait_for_port(port, process, error=Failure)
        admin = f"http://127.0.0.1:{admin_port}"
        wait_until("200 from /readyz", STARTUP_SECONDS, lambda: get(f"{admin}/readyz")[0] == 200, hawser)

        with open(workdir / "clients.log", "w") as client_log:
            clients = Clients(["node", str(workdir / "clients.js"), f"http://127.0.0.1:{http_port}",
                               str(args.clients), cookie_name, str(modules)], node_env, client_log)
        processes.append(clients.process)
        checks += connect_checks(label, clients.read("connect"), cookie_name, list(servers))

        # The last server leaves as Kubernetes removes a Pod; with 3 or more, the one before
        # crashes while listed.
        steps = [("removed", SERVER_IDS[args.servers - 1]), ("crashed", SERVER_IDS[args.servers - 2])]
        steps = steps[:max(0, min(2, args.servers - 1))]
        if steps and not all(ok for ok, _, _ in checks[:2]):
            checks[-1][2].append("failover steps not tried: the clients did not all connect and stay on one server")
            steps = []
        for how, sid in steps:
            port, process = servers[sid]
            if how == "removed":
                what = f"server {sid} removed from the EndpointSlices, then killed"
                (manifests / f"slice-{sid}.yaml").unlink()
                wait_until(f"routing table without 127.0.0.1:{port}", RELOAD_SECONDS,
                           lambda: unlisted(f"{admin}/debug/routes", port), hawser)
            else:
                what = f"server {sid} killed, still listed"
            process.kill()
            process.wait()
            clients.send({"phase": how, "dead": sid})
            checks += failover_checks(label, clients.read(how), what, sid, cookie_name)
        clients.send({"stop": True})
    except Failure as failure:
        checks.append((False, f"{label}: {failure}", []))
    finally:
        for process in reversed(processes):
            stop(process)
        failed = [notes for ok, _, notes in checks if not ok]
        if failed:
            try:
                failed[0].extend(["what the servers and hawser saw:"]
                                 + [f"  {note}" for note in diagnostics(server_logs, workdir / "hawser.log")])
            except OSError:
                pass
        shutil.rmtree(workdir, ignore_errors=True)
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hawser", default="target/debug/hawser")
    parser.add_argument("--route", choices=[*ROUTES, "both"], default="both",
                        help="which kind of route carries the affinity (default: both, one pass each)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--servers", type=int, default=3, choices=range(1, len(SERVER_IDS) + 1), metavar="1..8",
                        help="socket.io servers (default 3; fewer skips the failover steps that need them)")
    args = parser.parse_args()
    binary = str(Path(args.hawser).resolve())
    modules = ensure_node()
    started = time.monotonic()
    checks = []
    for label in ROUTES if args.route == "both" else [args.route]:
        checks += run(label, args, binary, modules)
    passed, failed = print_checks(checks)
    print(f"     {time.monotonic() - started:.1f} s in all")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
