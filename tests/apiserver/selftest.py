#!/usr/bin/env python3
"""Self-test of tests/apiserver/apiserver.py: starts it as a subprocess and checks it over HTTP
with the standard library only. Prints `N passed, M failed` last; exits 1 on any failure.

    python3 tests/apiserver/selftest.py
"""

import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "apiserver.py")

ING = "/apis/networking.k8s.io/v1/namespaces/%s/ingresses"
WSR = "/apis/hawser.dev/v1alpha1/namespaces/%s/websocketroutes"
SVC = "/api/v1/namespaces/%s/services"
SEC = "/api/v1/namespaces/%s/secrets"
CM = "/api/v1/namespaces/%s/configmaps"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/%s/leases"


class ApiServer:
    def __init__(self, *extra):
        self.proc = subprocess.Popen([sys.executable, SERVER, "--port", "0", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("unexpected first line %r; stderr: %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))
        # keep stderr drained so a chatty server can never block on a full pipe
        self.err = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def request(self, method, path, body=None, ctype="application/json", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs["Content-Type"] = ctype
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            obj = json.loads(raw) if raw else None
        except ValueError:
            obj = raw
        return resp.status, obj, resp.getheader("Content-Type")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body):
        return self.request("POST", path, body)

    def put(self, path, body):
        return self.request("PUT", path, body)

    def patch(self, path, body, ctype="application/merge-patch+json"):
        return self.request("PATCH", path, body, ctype)

    def delete(self, path, body=None):
        return self.request("DELETE", path, body)

    def watch(self, path):
        return Watch(self.port, path)


class Watch:
    """A watch request read line by line on a thread into a queue."""

    def __init__(self, port, path):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.ctype = self.resp.getheader("Content-Type")
        self.chunked = self.resp.getheader("Transfer-Encoding")
        self.q = queue.Queue()
        self.closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                self.q.put(json.loads(line))
        except Exception:
            pass
        self.closed.set()

    def next(self, timeout=5, skip_bookmarks=True):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if skip_bookmarks and ev["type"] == "BOOKMARK":
                continue
            return ev

    def close(self):
        try:
            self.conn.sock.shutdown(2)
        except Exception:
            pass
        self.conn.close()


PASSED, FAILED = [], []


def check(name, cond, detail=""):
    if cond:
        PASSED.append(name)
    else:
        FAILED.append(name)
        print("FAIL: %s %s" % (name, detail))


def is_status(obj, code, reason):
    return isinstance(obj, dict) and obj.get("kind") == "Status" and obj.get("apiVersion") == "v1" and \
        obj.get("status") == "Failure" and obj.get("code") == code and obj.get("reason") == reason and \
        isinstance(obj.get("message"), str)


def ingress(name, labels=None, host="a.example.com"):
    md = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": md,
            "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "echo", "port": {"number": 80}}}}]}}]}}


def wsr(name):
    return {"apiVersion": "hawser.dev/v1alpha1", "kind": "WebSocketRoute", "metadata": {"name": name},
            "spec": {"rules": [{"backends": [{"name": "echo", "port": 80}]}]}}


# ---------------------------------------------------------------------------------------------


def test_discovery(s):
    code, body, ct = s.get("/api")
    check("GET /api lists v1", code == 200 and body["kind"] == "APIVersions" and body["versions"] == ["v1"], body)
    check("Content-Type is application/json", ct == "application/json", ct)
    code, body, _ = s.get("/api/v1")
    names = {r["name"]: r for r in body["resources"]}
    check("/api/v1 has the core resources",
          all(n in names for n in ["services", "secrets", "endpoints", "events", "namespaces", "configmaps"]), names.keys())
    check("/api/v1 entries have name/singularName/namespaced/kind/verbs",
          all(set(r) >= {"name", "singularName", "namespaced", "kind", "verbs"} for r in body["resources"]))
    check("namespaces are cluster-scoped, services namespaced",
          names["namespaces"]["namespaced"] is False and names["services"]["namespaced"] is True)
    code, body, _ = s.get("/apis")
    groups = {g["name"]: g for g in body["groups"]}
    check("/apis is an APIGroupList with every group",
          body["kind"] == "APIGroupList" and set(groups) >= {"networking.k8s.io", "discovery.k8s.io",
                                                              "coordination.k8s.io", "events.k8s.io",
                                                              "apiextensions.k8s.io", "hawser.dev"}, groups.keys())
    check("group has preferredVersion", groups["hawser.dev"]["preferredVersion"]["groupVersion"] == "hawser.dev/v1alpha1")
    code, body, _ = s.get("/apis/networking.k8s.io/v1")
    names = {r["name"]: r for r in body["resources"]}
    check("networking.k8s.io/v1 has ingresses, ingresses/status, ingressclasses",
          {"ingresses", "ingresses/status", "ingressclasses"} <= set(names) and names["ingressclasses"]["namespaced"] is False)
    code, body, _ = s.get("/apis/hawser.dev/v1alpha1")
    names = {r["name"]: r for r in body["resources"]}
    w = names.get("websocketroutes", {})
    check("hawser.dev/v1alpha1 serves websocketroutes (wsr) with status",
          w.get("kind") == "WebSocketRoute" and w.get("namespaced") is True and "wsr" in w.get("shortNames", [])
          and "websocketroutes/status" in names and "watch" in w.get("verbs", []), names)
    for gv, res in [("discovery.k8s.io/v1", "endpointslices"), ("coordination.k8s.io/v1", "leases"),
                    ("events.k8s.io/v1", "events"), ("apiextensions.k8s.io/v1", "customresourcedefinitions")]:
        code, body, _ = s.get("/apis/" + gv)
        check("%s serves %s" % (gv, res), code == 200 and res in [r["name"] for r in body["resources"]])
    code, body, ct = s.get("/apis/nope.example.com/v1")
    check("unknown group/version is 404 Status", code == 404 and is_status(body, 404, "NotFound") and ct == "application/json", body)
    code, body, _ = s.get("/apis/networking.k8s.io/v9/ingresses")
    check("unknown version resources are 404", code == 404 and is_status(body, 404, "NotFound"))
    code, body, _ = s.get("/api/v1/namespaces/default/widgets")
    check("unknown resource is 404", code == 404 and is_status(body, 404, "NotFound"))
    code, body, _ = s.get("/apis/networking.k8s.io")
    check("GET /apis/{group} is an APIGroup", code == 200 and body.get("kind") == "APIGroup")
    code, body, _ = s.get("/version")
    check("GET /version", code == 200 and body.get("major") == "1")


def test_crud(s):
    code, obj, ct = s.post(ING % "crud", ingress("web", {"app": "web"}))
    md = obj["metadata"]
    check("create is 201", code == 201 and ct == "application/json", (code, obj))
    check("create stamps namespace from the URL", md.get("namespace") == "crud")
    check("create stamps a uuid uid", re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", md.get("uid", "")))
    check("create stamps creationTimestamp (RFC 3339, UTC, seconds)",
          re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", md.get("creationTimestamp", "")), md)
    check("create stamps an integer resourceVersion string", md.get("resourceVersion", "").isdigit())
    check("create sets generation 1", md.get("generation") == 1)
    check("create fills apiVersion/kind", obj["apiVersion"] == "networking.k8s.io/v1" and obj["kind"] == "Ingress")
    code, obj2, _ = s.post(ING % "crud", ingress("web"))
    check("duplicate create is 409 AlreadyExists", code == 409 and is_status(obj2, 409, "AlreadyExists"), obj2)
    check("AlreadyExists message like the real server",
          obj2["message"] == 'ingresses.networking.k8s.io "web" already exists', obj2["message"])
    code, got, _ = s.get(ING % "crud" + "/web")
    check("get returns the stored object", code == 200 and got == obj, got)
    code, nf, _ = s.get(ING % "crud" + "/nope")
    check("get missing is 404 NotFound", code == 404 and is_status(nf, 404, "NotFound")
          and nf["message"] == 'ingresses.networking.k8s.io "nope" not found', nf)
    code, o, _ = s.post(ING % "crud", ingress("web2"))
    check("resourceVersion increases", int(o["metadata"]["resourceVersion"]) > int(md["resourceVersion"]))
    code, o, _ = s.post(CM % "crud", {"metadata": {"generateName": "gen-"}, "data": {"a": "b"}})
    check("generateName makes a name", code == 201 and o["metadata"]["name"].startswith("gen-")
          and len(o["metadata"]["name"]) > 4 and "generation" not in o["metadata"], o)
    code, o, _ = s.post(CM % "crud", {"metadata": {"name": "x", "namespace": "other"}})
    check("namespace mismatch is 400", code == 400 and is_status(o, 400, "BadRequest"))
    code, o, _ = s.post(CM % "crud", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
    check("kind mismatch is 400", code == 400 and is_status(o, 400, "BadRequest"))
    code, o, _ = s.post(CM % "crud", {"metadata": {"name": "Bad_Name"}})
    check("invalid name is 422 Invalid", code == 422 and is_status(o, 422, "Invalid"), o)
    code, lst, ct = s.get(ING % "crud")
    check("list kind/apiVersion/metadata.resourceVersion",
          code == 200 and lst["kind"] == "IngressList" and lst["apiVersion"] == "networking.k8s.io/v1"
          and lst["metadata"]["resourceVersion"].isdigit() and ct == "application/json", lst)
    check("list items carry apiVersion/kind",
          [i["metadata"]["name"] for i in lst["items"]] == ["web", "web2"]
          and all(i["kind"] == "Ingress" and i["apiVersion"] == "networking.k8s.io/v1" for i in lst["items"]))
    code, lst, _ = s.get("/apis/networking.k8s.io/v1/ingresses")
    check("cluster-wide list", code == 200 and {"web", "web2"} <= {i["metadata"]["name"] for i in lst["items"]})
    code, lst2, _ = s.get("/apis/networking.k8s.io/v1/namespaces/elsewhere/ingresses")
    check("namespaced list is scoped", code == 200 and lst2["items"] == [])
    code, lst, _ = s.get(ING % "crud" + "?limit=1")
    cont = lst["metadata"].get("continue")
    code, lst2, _ = s.get(ING % "crud" + "?limit=1&continue=" + (cont or ""))
    check("limit/continue pages", len(lst["items"]) == 1 and cont and [i["metadata"]["name"] for i in lst2["items"]] == ["web2"]
          and not lst2["metadata"].get("continue"), (lst["metadata"], lst2["metadata"]))
    code, lst, _ = s.get(ING % "crud" + "?resourceVersion=0&resourceVersionMatch=NotOlderThan")
    check("resourceVersion=0 NotOlderThan list", code == 200 and len(lst["items"]) == 2)
    code, lst, _ = s.get(ING % "crud" + "?resourceVersion=99999999")
    check("too large resourceVersion is 504", code == 504 and is_status(lst, 504, "Timeout"), lst)
    # cluster-scoped kinds
    code, o, _ = s.post("/apis/networking.k8s.io/v1/ingressclasses",
                        {"metadata": {"name": "hawser"}, "spec": {"controller": "hawser.dev/ingress-controller"}})
    check("cluster-scoped create", code == 201 and "namespace" not in o["metadata"], o)
    code, o, _ = s.get("/apis/networking.k8s.io/v1/namespaces/default/ingressclasses/hawser")
    check("cluster-scoped kind under a namespace is 404", code == 404)
    code, o, _ = s.get("/apis/networking.k8s.io/v1/ingressclasses/hawser")
    check("cluster-scoped get", code == 200 and o["metadata"]["name"] == "hawser")
    code, o, _ = s.get("/api/v1/namespaces/default")
    check("namespace default exists and is Active", code == 200 and o["status"]["phase"] == "Active")
    # delete
    code, o, _ = s.delete(ING % "crud" + "/web2")
    check("delete is 200 with a Status", code == 200 and o["kind"] == "Status" and o["status"] == "Success"
          and o["details"]["name"] == "web2", o)
    code, o, _ = s.delete(ING % "crud" + "/web2")
    check("delete missing is 404", code == 404 and is_status(o, 404, "NotFound"))
    code, o, _ = s.request("POST", ING % "crud" + "/web")
    check("POST on a name is 405 MethodNotAllowed", code == 405 and is_status(o, 405, "MethodNotAllowed"), o)
    code, o, _ = s.request("PUT", ING % "crud", {"metadata": {"name": "x"}})
    check("PUT on a collection is 405", code == 405 and is_status(o, 405, "MethodNotAllowed"))
    # secrets: stringData and default type
    code, o, _ = s.post(SEC % "crud", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    check("secret stringData lands in data; type defaults to Opaque",
          code == 201 and o.get("data") == {"k": "dg=="} and "stringData" not in o and o["type"] == "Opaque", o)
    code, o, _ = s.post(SVC % "crud", {"metadata": {"name": "svc"}, "spec": {"ports": [{"name": "http", "port": 80}]}})
    check("service defaults: clusterIP, type, port protocol/targetPort",
          code == 201 and o["spec"]["type"] == "ClusterIP" and o["spec"]["clusterIP"].startswith("10.96.")
          and o["spec"]["ports"][0] == {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}
          and "generation" not in o["metadata"], o)
    # finalizers
    code, o, _ = s.post(CM % "crud", {"metadata": {"name": "fin", "finalizers": ["hawser.dev/test"]}})
    code, o, _ = s.delete(CM % "crud" + "/fin")
    check("delete with finalizers sets deletionTimestamp (202)", code == 202 and o["metadata"].get("deletionTimestamp"), o)
    code, o, _ = s.get(CM % "crud" + "/fin")
    check("object with finalizers still exists", code == 200)
    code, o, _ = s.patch(CM % "crud" + "/fin", {"metadata": {"finalizers": None}})
    code2, _, _ = s.get(CM % "crud" + "/fin")
    check("removing the last finalizer completes the delete", code == 200 and code2 == 404, (code, code2))
    # delete preconditions
    code, o, _ = s.post(CM % "crud", {"metadata": {"name": "pre"}})
    code, o2, _ = s.delete(CM % "crud" + "/pre", {"preconditions": {"resourceVersion": "1"}})
    check("delete precondition mismatch is 409", code == 409 and is_status(o2, 409, "Conflict"), o2)
    # delete collection
    for n in ("dc1", "dc2"):
        s.post(CM % "dc", {"metadata": {"name": n, "labels": {"g": "x"}}})
    s.post(CM % "dc", {"metadata": {"name": "dc3"}})
    code, o, _ = s.delete(CM % "dc" + "?labelSelector=g%3Dx")
    code2, lst, _ = s.get(CM % "dc")
    check("delete collection by label", code == 200 and len(o["items"]) == 2
          and [i["metadata"]["name"] for i in lst["items"]] == ["dc3"], (o, lst))


def names(lst):
    return sorted(i["metadata"]["name"] for i in lst["items"])


def test_selectors(s):
    ns = "sel"
    s.post(ING % ns, ingress("a", {"app": "web", "tier": "front"}))
    s.post(ING % ns, ingress("b", {"app": "api", "tier": "back"}))
    s.post(ING % ns, ingress("c", {"app": "web"}))
    s.post(ING % ns, ingress("d"))
    q = lambda sel: names(s.get(ING % ns + "?labelSelector=" + sel)[1])
    check("labelSelector a=b", q("app%3Dweb") == ["a", "c"], q("app%3Dweb"))
    check("labelSelector a==b", q("app%3D%3Dweb") == ["a", "c"])
    check("labelSelector a!=b", q("app!%3Dweb") == ["b", "d"], q("app!%3Dweb"))
    check("labelSelector exists", q("tier") == ["a", "b"])
    check("labelSelector !exists", q("!tier") == ["c", "d"])
    check("labelSelector AND", q("app%3Dweb,tier%3Dfront") == ["a"])
    check("labelSelector in (...)", q("app%20in%20(web,api)") == ["a", "b", "c"], q("app%20in%20(web,api)"))
    check("labelSelector notin (...)", q("app%20notin%20(web)") == ["b", "d"])
    code, o, _ = s.get(ING % ns + "?labelSelector=a%3D%3D%3Db")
    check("bad labelSelector is 400", code == 400 and is_status(o, 400, "BadRequest"), o)
    f = lambda sel, path=ING % ns: names(s.get(path + "?fieldSelector=" + sel)[1])
    check("fieldSelector metadata.name=", f("metadata.name%3Db") == ["b"])
    check("fieldSelector metadata.name!=", f("metadata.name!%3Db") == ["a", "c", "d"])
    check("fieldSelector metadata.namespace (cluster-wide)",
          f("metadata.namespace%3Dsel", "/apis/networking.k8s.io/v1/ingresses") == ["a", "b", "c", "d"])
    check("label + field selector", names(s.get(ING % ns + "?labelSelector=app%3Dweb&fieldSelector=metadata.name!%3Da")[1]) == ["c"])
    s.post(SEC % ns, {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
    s.post(SEC % ns, {"metadata": {"name": "opaque"}, "data": {}})
    check("fieldSelector type= on secrets", f("type%3Dkubernetes.io/tls", SEC % ns) == ["tls"])
    check("fieldSelector type!= on secrets", f("type!%3Dkubernetes.io/tls", SEC % ns) == ["opaque"])
    code, o, _ = s.get(ING % ns + "?fieldSelector=spec.foo%3Dx")
    check("unsupported field label is 400", code == 400 and is_status(o, 400, "BadRequest") and "field label" in o["message"], o)


def test_watch(s):
    ns = "watch"
    code, a, _ = s.post(ING % ns, ingress("a", {"app": "web"}))
    s.post(ING % ns, ingress("b", {"app": "api"}))
    w0 = s.watch(ING % ns + "?watch=true&resourceVersion=0&timeoutSeconds=30")
    check("watch is 200 chunked application/json",
          w0.status == 200 and w0.ctype == "application/json" and w0.chunked == "chunked", (w0.status, w0.ctype, w0.chunked))
    e1, e2 = w0.next(), w0.next()
    check("watch from rv 0 sends ADDED for current objects",
          e1 and e2 and (e1["type"], e2["type"]) == ("ADDED", "ADDED")
          and sorted([e1["object"]["metadata"]["name"], e2["object"]["metadata"]["name"]]) == ["a", "b"]
          and e1["object"]["kind"] == "Ingress", (e1, e2))
    code, lst, _ = s.get(ING % ns)
    list_rv = lst["metadata"]["resourceVersion"]
    wl = s.watch(ING % ns + "?watch=1&labelSelector=app%3Dweb&resourceVersion=" + list_rv)
    wf = s.watch(ING % ns + "?watch=true&fieldSelector=metadata.name%3Db&resourceVersion=" + list_rv)
    wb = s.watch(ING % ns + "?watch=true&allowWatchBookmarks=true&resourceVersion=" + list_rv)
    t0 = time.monotonic()
    code, m, _ = s.patch(ING % ns + "/a", {"metadata": {"annotations": {"x": "1"}}})
    ev = w0.next()
    latency = time.monotonic() - t0
    check("watch receives MODIFIED", ev and ev["type"] == "MODIFIED" and ev["object"]["metadata"]["annotations"] == {"x": "1"}
          and ev["object"]["metadata"]["resourceVersion"] == m["metadata"]["resourceVersion"], ev)
    check("a write wakes watchers promptly (< 0.5 s)", latency < 0.5, latency)
    ev = wl.next()
    check("watch from a later rv starts after it (labelSelector)", ev and ev["type"] == "MODIFIED"
          and ev["object"]["metadata"]["name"] == "a", ev)
    bm = wb.next(skip_bookmarks=False)
    check("bookmark on request start", bm and bm["type"] == "BOOKMARK"
          and bm["object"]["metadata"]["resourceVersion"].isdigit() and bm["object"]["kind"] == "Ingress"
          and bm["object"]["apiVersion"] == "networking.k8s.io/v1", bm)
    ev = wb.next()
    check("bookmark watch also gets MODIFIED", ev and ev["type"] == "MODIFIED", ev)
    bm = wb.next(4, skip_bookmarks=False)
    check("periodic bookmark carries the current rv", bm and bm["type"] == "BOOKMARK"
          and int(bm["object"]["metadata"]["resourceVersion"]) >= int(m["metadata"]["resourceVersion"]), bm)
    s.delete(ING % ns + "/a")
    ev = w0.next()
    check("watch receives DELETED with the final object", ev and ev["type"] == "DELETED"
          and ev["object"]["metadata"]["name"] == "a"
          and int(ev["object"]["metadata"]["resourceVersion"]) > int(m["metadata"]["resourceVersion"]), ev)
    ev = wl.next()
    check("label-selected watch receives DELETED", ev and ev["type"] == "DELETED", ev)
    s.patch(ING % ns + "/b", {"metadata": {"labels": {"app": "web"}}})
    ev = wl.next()
    check("object that starts matching the selector arrives as ADDED", ev and ev["type"] == "ADDED"
          and ev["object"]["metadata"]["name"] == "b", ev)
    s.patch(ING % ns + "/b", {"metadata": {"labels": {"app": "api"}}})
    ev = wl.next()
    check("object that stops matching the selector leaves as DELETED", ev and ev["type"] == "DELETED"
          and ev["object"]["metadata"]["name"] == "b", ev)
    evs = [w0.next(), w0.next()]
    check("unfiltered watch sees both label changes", [e and e["type"] for e in evs] == ["MODIFIED", "MODIFIED"], evs)
    evs = [wf.next(), wf.next()]
    check("fieldSelector watch sees only its object", all(e and e["object"]["metadata"]["name"] == "b" for e in evs)
          and wf.next(0.3) is None, evs)
    # other namespaces and kinds don't leak in
    s.post(ING % "elsewhere", ingress("z"))
    s.post(CM % ns, {"metadata": {"name": "cm"}})
    check("watch is scoped to its namespace and kind", w0.next(0.5) is None)
    # streaming list
    ws = s.watch(ING % ns + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                 "&allowWatchBookmarks=true&resourceVersion=0")
    ev = ws.next()
    bm = ws.next(skip_bookmarks=False)
    check("sendInitialEvents: ADDED then BOOKMARK with k8s.io/initial-events-end",
          ev and ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "b" and bm and bm["type"] == "BOOKMARK"
          and bm["object"]["metadata"].get("annotations") == {"k8s.io/initial-events-end": "true"}, (ev, bm))
    code, o, _ = s.get(ING % ns + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan")
    check("sendInitialEvents without allowWatchBookmarks is 422", code == 422 and is_status(o, 422, "Invalid"), o)
    # cluster-wide watch
    wc = s.watch("/apis/networking.k8s.io/v1/ingresses?watch=true&resourceVersion=" + lst["metadata"]["resourceVersion"])
    s.post(ING % "other", ingress("c"))
    seen = []
    while True:
        ev = wc.next(1)
        if not ev:
            break
        seen.append((ev["type"], ev["object"]["metadata"]["namespace"], ev["object"]["metadata"]["name"]))
    check("cluster-wide watch replays later changes in every namespace",
          ("ADDED", "elsewhere", "z") in seen and ("ADDED", "other", "c") in seen and ("DELETED", "watch", "a") in seen, seen)
    # timeoutSeconds
    wt = s.watch(ING % ns + "?watch=true&resourceVersion=%s&timeoutSeconds=1" % lst["metadata"]["resourceVersion"])
    closed = wt.closed.wait(4)
    check("timeoutSeconds ends the watch", closed)
    # many concurrent watches all see one write
    ws8 = [s.watch(CM % ns + "?watch=true&allowWatchBookmarks=true&resourceVersion=" + s.get(CM % ns)[1]["metadata"]["resourceVersion"])
           for _ in range(8)]
    s.post(CM % ns, {"metadata": {"name": "fanout"}})
    evs = [w.next() for w in ws8]
    check("8 concurrent watches each get the event", all(e and e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "fanout"
                                                         for e in evs), evs)
    for w in ws8 + [w0, wl, wf, wb, ws, wc]:
        w.close()


def test_watch_history():
    s = ApiServer("--history", "5")
    try:
        code, o, _ = s.post(CM % "h", {"metadata": {"name": "first"}})
        old = o["metadata"]["resourceVersion"]
        for i in range(10):
            s.post(CM % "h", {"metadata": {"name": "n%d" % i}})
        w = s.watch(CM % "h" + "?watch=true&resourceVersion=" + old)
        ev = w.next()
        check("watch from a compacted rv gets ERROR 410 Expired",
              ev and ev["type"] == "ERROR" and ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired", ev)
        w.close()
    finally:
        s.stop()


def test_status_and_generation(s):
    ns = "status"
    code, o, _ = s.post(WSR % ns, dict(wsr("r"), status={"conditions": [{"type": "Accepted", "status": "True"}]}))
    check("status in a create is dropped (status subresource)", code == 201 and "status" not in o, o)
    rv0, gen0 = int(o["metadata"]["resourceVersion"]), o["metadata"]["generation"]
    code, o, _ = s.patch(WSR % ns + "/r/status", {"status": {"conditions": [{"type": "Accepted", "status": "True"}]},
                                                  "spec": {"rules": []}, "metadata": {"labels": {"x": "y"}}})
    check("status patch changes only .status", code == 200 and o["status"]["conditions"][0]["type"] == "Accepted"
          and o["spec"]["rules"] != [] and "labels" not in o["metadata"], o)
    check("status write does not bump generation but bumps rv",
          o["metadata"]["generation"] == gen0 and int(o["metadata"]["resourceVersion"]) > rv0)
    code, o2, _ = s.patch(WSR % ns + "/r", {"status": {"conditions": []}, "metadata": {"labels": {"a": "b"}}})
    check("main-resource write ignores .status", code == 200 and o2["status"] == o["status"], o2)
    check("metadata-only change does not bump generation", o2["metadata"]["generation"] == gen0)
    code, o3, _ = s.patch(WSR % ns + "/r", {"spec": {"hostnames": ["chat.example.com"]}})
    check("spec change bumps generation", o3["metadata"]["generation"] == gen0 + 1, o3["metadata"])
    code, o4, _ = s.patch(WSR % ns + "/r", {"spec": {"hostnames": ["chat.example.com"]}})
    check("no-op patch keeps resourceVersion", o4["metadata"]["resourceVersion"] == o3["metadata"]["resourceVersion"])
    code, st, _ = s.get(WSR % ns + "/r/status")
    check("GET .../status returns the object", code == 200 and st["status"] == o["status"])
    code, o5, _ = s.put(WSR % ns + "/r/status", dict(st, status={"observedGeneration": 2}, spec={}))
    check("PUT .../status replaces only status", code == 200 and o5["status"] == {"observedGeneration": 2}
          and o5["spec"] == o3["spec"] and o5["metadata"]["generation"] == o3["metadata"]["generation"], o5)
    # built-in kinds with a status subresource: Ingress and Service
    code, ing, _ = s.post(ING % ns, ingress("i"))
    code, ing2, _ = s.patch(ING % ns + "/i/status", {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}},
                            "application/merge-patch+json")
    code, ing3, _ = s.put(ING % ns + "/i", dict(ing2, status={"loadBalancer": {}}))
    check("ingress status via subresource, kept across a main PUT",
          ing3["status"]["loadBalancer"]["ingress"] == [{"ip": "127.0.0.1"}] and ing3["metadata"]["generation"] == 1, ing3)
    code, ing4, _ = s.put(ING % ns + "/i", dict(ing3, spec=ingress("i", host="b.example.com")["spec"]))
    check("ingress spec PUT bumps generation", ing4["metadata"]["generation"] == 2)
    code, ing5, _ = s.patch(ING % ns + "/i/status", {"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}},
                                                     "spec": {"rules": []}})
    check("ingress status patch ignores spec, no generation bump",
          ing5["spec"] == ing4["spec"] and ing5["metadata"]["generation"] == 2, ing5)
    code, o, _ = s.get(CM % ns + "/x/status")
    check("status subresource of a kind without one is 404", code == 404)


def test_conflicts(s):
    ns = "conflict"
    code, o, _ = s.post(LEASE % ns, {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}})
    stale = o
    code, o2, _ = s.put(LEASE % ns + "/leader", dict(o, spec={"holderIdentity": "b"}))
    check("PUT with current rv is 200", code == 200 and o2["spec"]["holderIdentity"] == "b"
          and int(o2["metadata"]["resourceVersion"]) > int(o["metadata"]["resourceVersion"]))
    code, c, _ = s.put(LEASE % ns + "/leader", dict(stale, spec={"holderIdentity": "c"}))
    check("PUT with a stale rv is 409 Conflict", code == 409 and is_status(c, 409, "Conflict")
          and "the object has been modified" in c["message"], c)
    code, g, _ = s.get(LEASE % ns + "/leader")
    check("conflicting PUT changed nothing", g["spec"]["holderIdentity"] == "b")
    body = dict(g, spec={"holderIdentity": "d"})
    del body["metadata"]["resourceVersion"]
    code, o3, _ = s.put(LEASE % ns + "/leader", body)
    check("PUT without rv is unconditional for built-ins", code == 200 and o3["spec"]["holderIdentity"] == "d")
    code, nf, _ = s.put(LEASE % ns + "/nope", {"metadata": {"name": "nope"}})
    check("PUT on a missing object is 404", code == 404 and is_status(nf, 404, "NotFound"))
    code, bad, _ = s.put(LEASE % ns + "/leader", {"metadata": {"name": "other"}})
    check("PUT name mismatch is 400", code == 400 and is_status(bad, 400, "BadRequest"))
    s.post(WSR % ns, wsr("r"))
    code, o, _ = s.put(WSR % ns + "/r", wsr("r"))
    check("PUT without rv on a custom resource is 422", code == 422 and is_status(o, 422, "Invalid"), o)
    code, c, _ = s.patch(LEASE % ns + "/leader", {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]},
                                                  "spec": {"holderIdentity": "e"}})
    check("merge patch with a stale rv is 409", code == 409 and is_status(c, 409, "Conflict"), c)
    code, c, _ = s.patch(LEASE % ns + "/leader", {"metadata": {"resourceVersion": o3["metadata"]["resourceVersion"]},
                                                  "spec": {"holderIdentity": "e"}})
    check("merge patch with the current rv is 200", code == 200 and c["spec"]["holderIdentity"] == "e")
    code, c, _ = s.patch(WSR % ns + "/r/status", {"metadata": {"resourceVersion": "1"}, "status": {"a": 1}})
    check("status patch with a stale rv is 409", code == 409)


def test_patches(s):
    ns = "patch"
    code, o, _ = s.post(CM % ns, {"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"k": "v", "drop": "x"}})
    code, o, _ = s.patch(CM % ns + "/c", {"metadata": {"labels": {"b": None, "c": "3"}}, "data": {"drop": None, "n": "m"}})
    check("merge patch merges and deletes with null", code == 200 and o["metadata"]["labels"] == {"a": "1", "c": "3"}
          and o["data"] == {"k": "v", "n": "m"}, o)
    code, o, _ = s.patch(CM % ns + "/c", [{"op": "add", "path": "/data/j", "value": "1"},
                                          {"op": "replace", "path": "/data/k", "value": "w"},
                                          {"op": "remove", "path": "/data/n"},
                                          {"op": "add", "path": "/metadata/labels/x~1y", "value": "z"},
                                          {"op": "test", "path": "/data/j", "value": "1"}], "application/json-patch+json")
    check("json patch add/replace/remove/test with ~1 escape", code == 200 and o["data"] == {"k": "w", "j": "1"}
          and o["metadata"]["labels"].get("x/y") == "z", o)
    code, e, _ = s.patch(CM % ns + "/c", [{"op": "test", "path": "/data/k", "value": "nope"}], "application/json-patch+json")
    check("failing json patch test is 422", code == 422 and is_status(e, 422, "Invalid"), e)
    code, e, _ = s.patch(CM % ns + "/c", [{"op": "remove", "path": "/data/missing"}], "application/json-patch+json")
    check("json patch remove of a missing path is 422", code == 422, e)
    code, o, _ = s.patch(CM % ns + "/c", {"data": {"s": "1"}, "$setElementOrder/x": []}, "application/strategic-merge-patch+json")
    check("strategic merge patch on a built-in acts as merge", code == 200 and o["data"].get("s") == "1"
          and "$setElementOrder/x" not in o, o)
    s.post(WSR % ns, wsr("r"))
    code, e, _ = s.patch(WSR % ns + "/r", {"spec": {}}, "application/strategic-merge-patch+json")
    check("strategic merge patch on a custom resource is 415", code == 415 and is_status(e, 415, "UnsupportedMediaType"), e)
    code, e, _ = s.patch(CM % ns + "/c", {"data": {}}, "text/plain")
    check("unknown patch type is 415", code == 415)
    # server-side apply
    apply_ct = "application/apply-patch+yaml"
    code, e, _ = s.patch(WSR % ns + "/r/status", {"apiVersion": "hawser.dev/v1alpha1", "kind": "WebSocketRoute",
                                                  "status": {"x": 1}}, apply_ct)
    check("apply without fieldManager is 422", code == 422 and is_status(e, 422, "Invalid"), e)
    code, o, _ = s.patch(WSR % ns + "/r/status?fieldManager=hawser&force=true",
                         {"apiVersion": "hawser.dev/v1alpha1", "kind": "WebSocketRoute",
                          "status": {"conditions": [{"type": "Accepted", "status": "True"}]}}, apply_ct)
    check("apply on /status (JSON body) sets status", code == 200 and o["status"]["conditions"][0]["status"] == "True", o)
    code, e, _ = s.patch(WSR % ns + "/r/status?fieldManager=hawser", {"status": {"x": 1}}, apply_ct)
    check("apply without apiVersion/kind is 400", code == 400 and is_status(e, 400, "BadRequest"), e)
    code, o, _ = s.patch(LEASE % ns + "/new?fieldManager=hawser",
                         {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "new"},
                          "spec": {"holderIdentity": "me"}}, apply_ct)
    check("apply creates a missing object (201)", code == 201 and o["spec"]["holderIdentity"] == "me"
          and o["metadata"]["namespace"] == ns, o)
    code, o, _ = s.patch(LEASE % ns + "/new?fieldManager=hawser",
                         {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "new",
                          "resourceVersion": "1"}, "spec": {"holderIdentity": "you"}}, apply_ct)
    check("apply with a stale rv is 409", code == 409, o)
    code, e, _ = s.patch(WSR % ns + "/missing/status?fieldManager=hawser",
                         {"apiVersion": "hawser.dev/v1alpha1", "kind": "WebSocketRoute", "status": {}}, apply_ct)
    check("apply on the status of a missing object is 404", code == 404)
    code, e, _ = s.patch(CM % ns + "/missing", {"data": {}})
    check("merge patch of a missing object is 404", code == 404 and is_status(e, 404, "NotFound"))


def test_events(s):
    ns = "events"
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.1"},
          "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "hawser.dev/controller",
          "reportingInstance": "hawser-0", "action": "Reconcile", "reason": "Accepted", "type": "Normal",
          "note": "routes built", "regarding": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                                "namespace": ns, "name": "web"}}
    code, o, _ = s.post("/apis/events.k8s.io/v1/namespaces/%s/events" % ns, ev)
    check("events.k8s.io/v1 create", code == 201 and o["note"] == "routes built", o)
    code, c, _ = s.get("/api/v1/namespaces/%s/events/web.1" % ns)
    check("the same Event through core/v1", code == 200 and c["message"] == "routes built"
          and c["involvedObject"]["name"] == "web" and c["reportingComponent"] == "hawser.dev/controller", c)
    code, lst, _ = s.get("/api/v1/namespaces/%s/events?fieldSelector=involvedObject.kind%%3DIngress,involvedObject.name%%3Dweb" % ns)
    check("core events field selector on involvedObject", names(lst) == ["web.1"], lst)
    code, o, _ = s.patch("/apis/events.k8s.io/v1/namespaces/%s/events/web.1" % ns,
                         {"series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:10.000000Z"}})
    check("events.k8s.io merge patch of series", code == 200 and o["series"]["count"] == 2)


def test_crd_lifecycle():
    s = ApiServer("--no-crd")
    try:
        code, o, _ = s.get("/apis/hawser.dev/v1alpha1")
        check("--no-crd: /apis/hawser.dev/v1alpha1 is 404", code == 404 and is_status(o, 404, "NotFound"), o)
        code, o, _ = s.get("/apis")
        check("--no-crd: hawser.dev not in /apis", "hawser.dev" not in [g["name"] for g in o["groups"]])
        code, o, _ = s.get(WSR % "default")
        check("--no-crd: websocketroutes list is 404", code == 404 and is_status(o, 404, "NotFound"))
        code, o, _ = s.get("/apis/hawser.dev/v1alpha1/websocketroutes?watch=true")
        check("--no-crd: websocketroutes watch is 404", code == 404)
        code, o, _ = s.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/websocketroutes.hawser.dev")
        check("--no-crd: no CRD object", code == 404)
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "websocketroutes.hawser.dev"},
               "spec": {"group": "hawser.dev", "scope": "Namespaced",
                        "names": {"kind": "WebSocketRoute", "plural": "websocketroutes", "singular": "websocketroute",
                                  "shortNames": ["wsr"]},
                        "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                      "schema": {"openAPIV3Schema": {"type": "object"}},
                                      "subresources": {"status": {}}}]}}
        code, o, _ = s.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        est = [c for c in o.get("status", {}).get("conditions", []) if c["type"] == "Established"]
        check("creating the CRD: 201 and Established", code == 201 and est and est[0]["status"] == "True", o)
        code, o, _ = s.get("/apis/hawser.dev/v1alpha1")
        check("after the CRD is created the group is served",
              code == 200 and "websocketroutes" in [r["name"] for r in o["resources"]], o)
        code, o, _ = s.post(WSR % "default", wsr("r"))
        check("custom resource create after CRD install", code == 201)
        w = s.watch("/apis/hawser.dev/v1alpha1/websocketroutes?watch=true&resourceVersion=" + o["metadata"]["resourceVersion"])
        code, o, _ = s.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/websocketroutes.hawser.dev")
        check("CRD delete returns the object", code == 200 and o.get("kind") == "CustomResourceDefinition", o)
        ev = w.next()
        check("CRD delete deletes its custom resources (DELETED event)", ev and ev["type"] == "DELETED", ev)
        check("CRD delete ends watches on its resources", w.closed.wait(3))
        code, o, _ = s.get(WSR % "default")
        check("after CRD delete the resource is 404 again", code == 404)
    finally:
        s.stop()


def test_state():
    d = tempfile.mkdtemp(prefix="apiserver-selftest-")
    path = os.path.join(d, "state.json")
    s = ApiServer("--state", path)
    try:
        code, a, _ = s.post(ING % "persist", ingress("web"))
        code, r, _ = s.post(WSR % "persist", wsr("chat"))
        code, r, _ = s.patch(WSR % "persist" + "/chat/status", {"status": {"observedGeneration": 1}})
        code, lst, _ = s.get(ING % "persist")
        rv_before = int(lst["metadata"]["resourceVersion"])
        check("state file written on change", os.path.exists(path))
    finally:
        rc = s.stop()
    check("SIGTERM stops the server cleanly", rc == 0, rc)
    s = ApiServer("--state", path)
    try:
        code, a2, _ = s.get(ING % "persist" + "/web")
        check("objects survive a restart", code == 200 and a2 == a, (a, a2))
        code, r2, _ = s.get(WSR % "persist" + "/chat")
        check("custom resources and their status survive a restart", code == 200 and r2 == r, r2)
        code, lst, _ = s.get(ING % "persist")
        check("resourceVersion survives a restart", int(lst["metadata"]["resourceVersion"]) >= rv_before,
              (lst["metadata"], rv_before))
        code, c, _ = s.post(CM % "persist", {"metadata": {"name": "after"}})
        check("writes after a restart get higher resourceVersions", int(c["metadata"]["resourceVersion"]) > rv_before)
        w = s.watch(ING % "persist" + "?watch=true&resourceVersion=%d" % rv_before)
        s.patch(ING % "persist" + "/web", {"metadata": {"labels": {"after": "restart"}}})
        ev = w.next()
        check("watch from the last rv before the restart works", ev and ev["type"] == "MODIFIED", ev)
        w.close()
        w = s.watch(ING % "persist" + "?watch=true&resourceVersion=1")
        ev = w.next()
        check("watch from an rv older than the restart is 410", ev and ev["type"] == "ERROR" and ev["object"]["code"] == 410, ev)
        w.close()
    finally:
        s.stop()
    s = ApiServer("--state", path, "--no-crd")
    try:
        code, o, _ = s.get(WSR % "persist")
        check("--no-crd with a state file removes the CRD", code == 404)
        code, o, _ = s.get(ING % "persist" + "/web")
        check("--no-crd keeps the other objects", code == 200)
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_table(s):
    code, o, _ = s.get(ING % "crud", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    check("Table for kubectl when asked", code == 200 and o.get("kind") == "Table" and o["rows"]
          and o["columnDefinitions"][0]["name"] == "Name", o)


def main():
    s = ApiServer()
    try:
        for t in (test_discovery, test_crud, test_selectors, test_watch, test_status_and_generation, test_conflicts,
                  test_patches, test_events, test_table):
            try:
                t(s)
            except Exception:
                FAILED.append(t.__name__)
                print("FAIL: %s raised\n%s" % (t.__name__, traceback.format_exc()))
    finally:
        s.stop()
        if s.err:
            sys.stdout.write("server stderr:\n" + "".join(s.err))
    for t in (test_watch_history, test_crd_lifecycle, test_state):
        try:
            t()
        except Exception:
            FAILED.append(t.__name__)
            print("FAIL: %s raised\n%s" % (t.__name__, traceback.format_exc()))
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
