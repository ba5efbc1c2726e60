#!/usr/bin/env python3
"""A stand-in Kubernetes API server for hawser's tests of its Kubernetes client path.

Plain HTTP on 127.0.0.1, JSON only, no authentication. It stores objects in memory
(optionally mirrored to a state file) and serves discovery, CRUD, the status subresource,
patches, lists and watches with the semantics of a real kube-apiserver as far as
tests/apiserver/README.md says; read that file for what is and is not modelled.

    python3 tests/apiserver/apiserver.py [--port 0] [--state FILE] [--no-crd]

prints exactly one line, `listening on 127.0.0.1:PORT`, then serves until SIGTERM/SIGINT.
Python 3.11, standard library only.
"""

import argparse
import asyncio
import base64
import collections
import copy
import json
import os
import re
import signal
import sys
import time
import urllib.parse
import uuid

SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-hawser-apiserver",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
STATUS_VERBS = ["get", "patch", "update"]
MAX_BODY = 3 * 1024 * 1024  # the real server's request size limit
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
HAWSER_CRD_NAME = "websocketroutes.hawser.dev"
PRECREATED_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, causes=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.causes = causes

    def status(self):
        st = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details or self.causes:
            d = dict(self.details or {})
            if self.causes:
                d["causes"] = self.causes
            st["details"] = d
        return st


def qualified(rt):
    return rt.plural if not rt.group else "%s.%s" % (rt.plural, rt.group)


def not_found(rt, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (qualified(rt), name),
                    {"name": name, "group": rt.group, "kind": rt.plural})


def already_exists(rt, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(rt), name),
                    {"name": name, "group": rt.group, "kind": rt.plural})


def conflict(rt, name, why="the object has been modified; please apply your changes to the latest version and try again"):
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (qualified(rt), name, why),
                    {"name": name, "group": rt.group, "kind": rt.plural})


def invalid(rt, name, field, detail, ctype="FieldValueInvalid"):
    kind = rt.kind if not rt.group else "%s.%s" % (rt.kind, rt.group)
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s: %s' % (kind, name, field, detail),
                    {"name": name, "group": rt.group, "kind": rt.kind},
                    [{"reason": ctype, "message": detail, "field": field}])


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def resource_not_found():
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed():
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def expired(msg):
    return ApiError(410, "Expired", msg)


def too_large_rv(rv, current):
    return ApiError(504, "Timeout", "Too large resource version: %s, current: %s" % (rv, current),
                    {"retryAfterSeconds": 1},
                    [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}])


# ---------------------------------------------------------------------------------------------
# Resource types


def _events_core_to_v1(obj):
    """core/v1 Event (the stored form) -> events.k8s.io/v1 Event."""
    out = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": obj.get("metadata", {})}
    rename = {
        "involvedObject": "regarding", "message": "note", "reportingComponent": "reportingController",
        "source": "deprecatedSource", "firstTimestamp": "deprecatedFirstTimestamp",
        "lastTimestamp": "deprecatedLastTimestamp", "count": "deprecatedCount",
    }
    for k, v in obj.items():
        if k in ("apiVersion", "kind", "metadata"):
            continue
        out[rename.get(k, k)] = v
    return out


def _events_v1_to_core(obj):
    out = {"apiVersion": "v1", "kind": "Event", "metadata": obj.get("metadata", {})}
    rename = {
        "regarding": "involvedObject", "note": "message", "reportingController": "reportingComponent",
        "deprecatedSource": "source", "deprecatedFirstTimestamp": "firstTimestamp",
        "deprecatedLastTimestamp": "lastTimestamp", "deprecatedCount": "count",
    }
    for k, v in obj.items():
        if k in ("apiVersion", "kind", "metadata"):
            continue
        out[rename.get(k, k)] = v
    return out


class RType:
    """One served resource of one group/version."""

    def __init__(self, group, version, plural, kind, singular, namespaced, short=(), status=False,
                 generation=False, storage=None, fields=(), categories=(), crd=None,
                 to_ext=None, to_int=None, returns_object=False, unconditional_update=True,
                 smp=True, printer_columns=None):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.singular = singular
        self.namespaced = namespaced
        self.short = list(short)
        self.status = status
        self.generation = generation
        self.storage = storage or "%s/%s" % (group or "core", plural)
        self.fields = list(fields)
        self.categories = list(categories)
        self.crd = crd  # name of the CRD that defines it, for custom resources
        self._to_ext = to_ext
        self._to_int = to_int
        self.returns_object = returns_object
        self.unconditional_update = unconditional_update
        self.smp = smp
        self.printer_columns = printer_columns or []
        self.storage_api_version = None  # for custom resources: apiVersion of the stored form

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def list_kind(self):
        return self.kind + "List"

    def to_ext(self, obj):
        if obj is None:
            return None
        if self._to_ext:
            out = self._to_ext(obj)
        else:
            out = {"apiVersion": self.api_version, "kind": self.kind}
            for k, v in obj.items():
                if k not in ("apiVersion", "kind"):
                    out[k] = v
        return copy.deepcopy(out)

    def to_int(self, obj):
        if self._to_int:
            return self._to_int(obj)
        out = dict(obj)
        out["apiVersion"] = self.storage_api_version or self.api_version
        out["kind"] = self.kind
        return out

    def field_allowed(self, field):
        if field == "metadata.name":
            return True
        if field == "metadata.namespace":
            return self.namespaced
        return field in self.fields


EVENT_FIELDS_CORE = ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                     "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                     "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"]
EVENT_FIELDS_V1 = [f.replace("involvedObject.", "regarding.") for f in EVENT_FIELDS_CORE if f.startswith("involvedObject.")] + \
    ["reason", "reportingController", "type"] + EVENT_FIELDS_CORE


def builtin_types():
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    return [
        RType("", "v1", "namespaces", "Namespace", "namespace", False, ["ns"], status=True,
              fields=["status.phase"], returns_object=True,
              printer_columns=[{"name": "Status", "type": "string", "jsonPath": ".status.phase"}, age]),
        RType("", "v1", "services", "Service", "service", True, ["svc"], status=True,
              fields=["spec.clusterIP", "spec.type"], categories=["all"],
              printer_columns=[{"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                               {"name": "Cluster-IP", "type": "string", "jsonPath": ".spec.clusterIP"},
                               {"name": "Ports", "type": "string", "jsonPath": ".spec.ports[*].port"}, age]),
        RType("", "v1", "endpoints", "Endpoints", "endpoints", True, ["ep"], printer_columns=[age]),
        RType("", "v1", "secrets", "Secret", "secret", True, fields=["type"],
              printer_columns=[{"name": "Type", "type": "string", "jsonPath": ".type"}, age]),
        RType("", "v1", "configmaps", "ConfigMap", "configmap", True, ["cm"], printer_columns=[age]),
        RType("", "v1", "events", "Event", "event", True, ["ev"], storage="core/events",
              fields=EVENT_FIELDS_CORE,
              printer_columns=[{"name": "Type", "type": "string", "jsonPath": ".type"},
                               {"name": "Reason", "type": "string", "jsonPath": ".reason"},
                               {"name": "Object", "type": "string", "jsonPath": ".involvedObject.name"},
                               {"name": "Message", "type": "string", "jsonPath": ".message"}, age]),
        RType("networking.k8s.io", "v1", "ingresses", "Ingress", "ingress", True, ["ing"], status=True,
              generation=True,
              printer_columns=[{"name": "Class", "type": "string", "jsonPath": ".spec.ingressClassName"},
                               {"name": "Hosts", "type": "string", "jsonPath": ".spec.rules[*].host"},
                               {"name": "Address", "type": "string", "jsonPath": ".status.loadBalancer.ingress[*].ip"},
                               age]),
        RType("networking.k8s.io", "v1", "ingressclasses", "IngressClass", "ingressclass", False,
              generation=True,
              printer_columns=[{"name": "Controller", "type": "string", "jsonPath": ".spec.controller"}, age]),
        RType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", "endpointslice", True,
              generation=True,
              printer_columns=[{"name": "AddressType", "type": "string", "jsonPath": ".addressType"},
                               {"name": "Ports", "type": "string", "jsonPath": ".ports[*].port"},
                               {"name": "Endpoints", "type": "string", "jsonPath": ".endpoints[*].addresses[*]"},
                               age]),
        RType("coordination.k8s.io", "v1", "leases", "Lease", "lease", True,
              printer_columns=[{"name": "Holder", "type": "string", "jsonPath": ".spec.holderIdentity"}, age]),
        RType("events.k8s.io", "v1", "events", "Event", "event", True, ["ev"], storage="core/events",
              fields=EVENT_FIELDS_V1, to_ext=_events_core_to_v1, to_int=_events_v1_to_core,
              printer_columns=[{"name": "Type", "type": "string", "jsonPath": ".type"},
                               {"name": "Reason", "type": "string", "jsonPath": ".reason"},
                               {"name": "Object", "type": "string", "jsonPath": ".regarding.name"},
                               {"name": "Note", "type": "string", "jsonPath": ".note"}, age]),
        RType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
              "customresourcedefinition", False, ["crd", "crds"], status=True, generation=True,
              returns_object=True, unconditional_update=False,
              printer_columns=[{"name": "Created At", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
    ]


BUILTIN_GROUP_ORDER = ["", "networking.k8s.io", "discovery.k8s.io", "coordination.k8s.io",
                       "events.k8s.io", "apiextensions.k8s.io"]


def hawser_crd():
    """The WebSocketRoute CRD as hawser ships it (crds/websocketroutes.hawser.dev.yaml), with the
    schema reduced to preserve-unknown-fields: this server does not validate against schemas."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": HAWSER_CRD_NAME},
        "spec": {
            "group": "hawser.dev",
            "names": {"kind": "WebSocketRoute", "plural": "websocketroutes", "shortNames": ["wsr"],
                      "singular": "websocketroute"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": True, "storage": True,
                "additionalPrinterColumns": [
                    {"jsonPath": ".spec.hostnames", "name": "Hosts", "type": "string"},
                    {"jsonPath": '.status.conditions[?(@.type=="Accepted")].status', "name": "Accepted",
                     "type": "string"},
                    {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
                ],
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "subresources": {"status": {}},
            }],
        },
    }


def crd_types(crd):
    """The RTypes that a CustomResourceDefinition serves."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    out = []
    storage_version = None
    for v in spec.get("versions") or []:
        if v.get("storage"):
            storage_version = v.get("name")
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        rt = RType(group, v.get("name"), names.get("plural"), names.get("kind"),
                   names.get("singular") or names.get("kind", "").lower(),
                   spec.get("scope", "Namespaced") == "Namespaced", names.get("shortNames") or [],
                   status="status" in ((v.get("subresources") or {})), generation=True,
                   storage="%s/%s" % (group, names.get("plural")), categories=names.get("categories") or [],
                   crd=crd["metadata"]["name"], returns_object=True, unconditional_update=False, smp=False,
                   printer_columns=v.get("additionalPrinterColumns") or [
                       {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}])
        rt.fields = [f.get("jsonPath", "").lstrip(".") for f in (v.get("selectableFields") or [])]
        rt.storage_api_version = "%s/%s" % (group, storage_version or v.get("name"))
        out.append(rt)
    return out


# ---------------------------------------------------------------------------------------------
# Selectors

LABEL_REQ_RE = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s*(?P<op>notin|in)\s*\((?P<vals>[^)]*)\)\s*$")


def _split_top(s):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_label_selector(s):
    reqs = []
    if s is None or not s.strip():
        return reqs
    for part in _split_top(s):
        p = part.strip()
        if not p:
            raise bad_request('unable to parse requirement: found \'\', expected: identifier')
        m = LABEL_REQ_RE.match(p)
        if m:
            vals = [v.strip() for v in m.group("vals").split(",")]
            for v in vals:
                if len(v) > 63 or not LABEL_VALUE_RE.match(v):
                    raise bad_request('unable to parse requirement: invalid label value: "%s"' % v)
            reqs.append((m.group("key"), m.group("op"), vals))
            continue
        if p.startswith("!"):
            key, op, vals = p[1:].strip(), "!", []
        else:
            m2 = re.match(r"^([^\s!=<>]+)\s*(==|=|!=|>|<)\s*(\S*)$", p)
            if m2:
                key, op, vals = m2.group(1), m2.group(2), [m2.group(3)]
                if op == "==":
                    op = "="
            elif re.match(r"^[^\s!=<>(),]+$", p):
                key, op, vals = p, "exists", []
            else:
                raise bad_request("unable to parse requirement: %r" % p)
        if not LABEL_NAME_RE.match(key):
            raise bad_request('unable to parse requirement: invalid label key "%s"' % key)
        for v in vals if op in ("=", "!=", "in", "notin") else []:
            if len(v) > 63 or not LABEL_VALUE_RE.match(v):
                raise bad_request('unable to parse requirement: invalid label value: "%s"' % v)
        if op in (">", "<"):
            try:
                int(vals[0])
            except ValueError:
                raise bad_request("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer")
        reqs.append((key, op, vals))
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
        if op == "=" and (not has or v != vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and (not has or v not in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        for v in vals if op in ("=", "!=", "in", "notin") else []:
            if len(v) > 63 or not LABEL_VALUE_RE.match(v):
                raise bad_request('unable to parse requirement: invalid label value: "%s"' % v)
        if op in (">", "<"):
            try:
                n = int(v) if has else None
            except ValueError:
                return False
            if n is None or (op == ">" and not n > int(vals[0])) or (op == "<" and not n < int(vals[0])):
                return False
    return True


def _unescape_field(v):
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v):
            out.append(v[i + 1])
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def parse_field_selector(s, rt):
    reqs = []
    if s is None or not s.strip():
        return reqs
    for part in re.split(r"(?<!\\),", s):
        p = part.strip()
        if not p:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", p)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (s, p))
        field, op, val = m.group(1).strip(), m.group(2), _unescape_field(m.group(3).strip())
        if not rt.field_allowed(field):
            raise bad_request('field label not supported: %s' % field)
        reqs.append((field, "!=" if op == "!=" else "=", val))
    return reqs


def field_value(obj, field):
    if field == "source" and isinstance(obj.get("source"), dict):
        return obj["source"].get("component", "")
    cur = obj
    for seg in field.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(seg)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, (dict, list)):
        return json.dumps(cur)
    return str(cur)


def fields_match(reqs, ext_obj):
    for field, op, val in reqs:
        f = field
        # events.k8s.io objects also answer to the core field names
        if ext_obj.get("apiVersion") == "events.k8s.io/v1":
            f = f.replace("involvedObject.", "regarding.").replace("reportingComponent", "reportingController")
        v = field_value(ext_obj, f)
        if (op == "=") != (v == val):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Patches


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# Merge keys of well-known lists, used only when a strategic patch carries `$patch` items but no
# `$setElementOrder` to name the key.
KNOWN_MERGE_KEYS = {"ports": "port", "conditions": "type", "containers": "name", "initContainers": "name",
                    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name",
                    "ownerReferences": "uid"}


def strategic_merge_patch(target, patch):
    """Strategic merge patch without the schema: a JSON merge patch that also understands the
    directives kubectl sends (`$patch: replace|delete`, `$setElementOrder/<list>`,
    `$deleteFromPrimitiveList/<list>`, `$retainKeys`). A list is merged by key only when the patch
    names the key (through `$setElementOrder`, or `$patch` items on a well-known list); other
    lists are replaced whole, as in a JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return strategic_merge_patch({}, {k: v for k, v in patch.items() if k != "$patch"})
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    orders = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$setElementOrder/")}
    deletes = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$deleteFromPrimitiveList/")}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list):
            out[k] = _smp_list(out.get(k), v, orders.get(k), k)
        else:
            r = strategic_merge_patch(out.get(k), v)
            if r is None:
                out.pop(k, None)
            else:
                out[k] = r
    for k, order in orders.items():
        if k not in patch and isinstance(out.get(k), list):
            out[k] = _smp_list(out[k], [], order, k)
    for k, vals in deletes.items():
        if isinstance(out.get(k), list):
            out[k] = [x for x in out[k] if x not in vals]
    if isinstance(patch.get("$retainKeys"), list):
        out = {k: v for k, v in out.items() if k in patch["$retainKeys"]}
    return out


def _smp_list(orig, plist, order, field):
    orig = copy.deepcopy(orig) if isinstance(orig, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in plist):
        return [strategic_merge_patch({}, i) for i in plist if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    key = None
    if order and isinstance(order[0], dict) and len(order[0]) == 1:
        key = next(iter(order[0]))
    elif any(isinstance(i, dict) and "$patch" in i for i in plist):
        key = KNOWN_MERGE_KEYS.get(field)
    if order and not isinstance(order[0], dict):
        # a primitive list with the merge strategy (e.g. finalizers): union, then the given order
        result = orig + [v for v in plist if v not in orig]
    elif key is None:
        return [strategic_merge_patch({}, i) if isinstance(i, dict) else copy.deepcopy(i) for i in plist
                if not (isinstance(i, dict) and i.get("$patch") == "delete")]
    else:
        result = orig
        for item in plist:
            if not isinstance(item, dict):
                result.append(copy.deepcopy(item))
                continue
            idx = [n for n, x in enumerate(result) if isinstance(x, dict) and x.get(key) == item.get(key)]
            if item.get("$patch") == "delete":
                result = [x for n, x in enumerate(result) if n not in idx]
            elif idx:
                result[idx[0]] = strategic_merge_patch(result[idx[0]], item)
            else:
                result.append(strategic_merge_patch({}, item))
    if order:
        keyf = (lambda x: x.get(key) if isinstance(x, dict) else x) if key else (lambda x: x)
        pos = {json.dumps(keyf(o) if not isinstance(o, dict) else o.get(key), sort_keys=True): n
               for n, o in enumerate(order)}
        result.sort(key=lambda x: pos.get(json.dumps(keyf(x), sort_keys=True), len(pos)))
    return result


class PatchError(Exception):
    pass


def _ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("invalid JSON pointer %r" % path)
    return [seg.replace("~1", "/").replace("~0", "~") for seg in path[1:].split("/")]


def _walk(doc, segs):
    cur = doc
    for seg in segs:
        if isinstance(cur, dict):
            if seg not in cur:
                raise PatchError("path not found: /%s" % "/".join(segs))
            cur = cur[seg]
        elif isinstance(cur, list):
            try:
                i = int(seg)
            except ValueError:
                raise PatchError("invalid array index %r" % seg)
            if not 0 <= i < len(cur):
                raise PatchError("array index out of range: %s" % seg)
            cur = cur[i]
        else:
            raise PatchError("path not found: /%s" % "/".join(segs))
    return cur


def _get(doc, path):
    return _walk(doc, _ptr(path))


def _remove(doc, path):
    segs = _ptr(path)
    if not segs:
        raise PatchError("cannot remove the root")
    parent = _walk(doc, segs[:-1])
    last = segs[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError("Unable to remove nonexistent key: %s: missing value" % last)
        return parent.pop(last)
    if isinstance(parent, list):
        try:
            i = int(last)
        except ValueError:
            raise PatchError("invalid array index %r" % last)
        if not 0 <= i < len(parent):
            raise PatchError("Unable to remove index %d: out of range" % i)
        return parent.pop(i)
    raise PatchError("path not found: %s" % path)


def _add(doc, path, value, replace=False):
    segs = _ptr(path)
    if not segs:
        return value
    parent = _walk(doc, segs[:-1])
    last = segs[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError("replace operation does not apply: doc is missing key: %s: missing value" % path)
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        else:
            try:
                i = int(last)
            except ValueError:
                raise PatchError("invalid array index %r" % last)
            if replace:
                if not 0 <= i < len(parent):
                    raise PatchError("replace operation does not apply: index out of range")
                parent[i] = value
            else:
                if not 0 <= i <= len(parent):
                    raise PatchError("add operation does not apply: index out of range")
                parent.insert(i, value)
    else:
        raise PatchError("path not found: %s" % path)
    return doc


def json_patch(doc, ops):
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("invalid operation %r" % (op,))
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("operation %s is missing a value" % kind)
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            if path == "":
                doc = copy.deepcopy(op["value"])
            else:
                doc = _add(doc, path, copy.deepcopy(op["value"]), replace=True)
        elif kind == "move":
            v = _remove(doc, op["from"])
            doc = _add(doc, path, v)
        elif kind == "copy":
            v = copy.deepcopy(_get(doc, op["from"]))
            doc = _add(doc, path, v)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError("testing value %s failed" % path)
        else:
            raise PatchError("Unexpected kind: %s" % kind)
    return doc


# ---------------------------------------------------------------------------------------------
# Printer columns (for kubectl's server-side Table requests)


def simple_jsonpath(obj, path):
    """Enough JSONPath for printer columns: .a.b, [*], [n], [?(@.k=="v")]."""
    toks = re.findall(r'\.([A-Za-z0-9_\-]+)|\[(\*|\d+|\?\(@\.[A-Za-z0-9_\-.]+\s*==\s*["\'][^"\']*["\']\))\]', path)
    cur = [obj]
    for name, idx in toks:
        nxt = []
        for c in cur:
            if name:
                if isinstance(c, dict) and name in c:
                    nxt.append(c[name])
            elif idx == "*":
                if isinstance(c, list):
                    nxt.extend(c)
                elif isinstance(c, dict):
                    nxt.extend(c.values())
            elif idx.isdigit():
                if isinstance(c, list) and int(idx) < len(c):
                    nxt.append(c[int(idx)])
            else:
                m = re.match(r'\?\(@\.([A-Za-z0-9_\-.]+)\s*==\s*["\']([^"\']*)["\']\)', idx)
                items = c if isinstance(c, list) else []
                for it in items:
                    if isinstance(it, dict) and field_value(it, m.group(1)) == m.group(2):
                        nxt.append(it)
        cur = nxt
    return cur


def human_age(ts):
    """A timestamp as kubectl shows an age: 45s, 3m20s, 25m, 5h10m, 30h, 3d4h, 12d."""
    try:
        t = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except (TypeError, ValueError):
        return ts
    s = max(0, int(time.time() - t))
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    d = h // 24
    if d < 8:
        return "%dd%dh" % (d, h % 24) if h % 24 else "%dd" % d
    return "%dd" % d


def cell(vals, typ):
    if typ == "date" and len(vals) == 1 and isinstance(vals[0], str):
        return human_age(vals[0])
    if not vals:
        return None if typ != "string" else "<none>"
    flat = []
    for v in vals:
        if isinstance(v, list):
            flat.extend(v)
        else:
            flat.append(v)
    if typ in ("integer", "number", "boolean") and len(flat) == 1:
        return flat[0]
    return ",".join(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in flat)


# ---------------------------------------------------------------------------------------------
# The store


class Store:
    def __init__(self, args):
        self.args = args
        self.rv = 0
        self.objects = {}  # storage key -> {(namespace, name): internal object}
        self.builtins = builtin_types()
        self.crd_rtypes = {}  # crd name -> [RType]
        self.log = collections.deque()  # (rv, storage, type, old, new)
        self.log_base = 0  # absolute index of log[0]
        self.log_floor = 0  # a watch can start from any rv >= log_floor
        self.history = args.history
        self.changed = None  # future resolved (and replaced) on every change
        self.next_ip = 10
        self.state_file = args.state

    # ---- types -------------------------------------------------------------------------------

    def all_types(self):
        out = list(self.builtins)
        for name in sorted(self.crd_rtypes):
            out.extend(self.crd_rtypes[name])
        return out

    def lookup(self, group, version, plural):
        for rt in self.all_types():
            if rt.group == group and rt.version == version and rt.plural == plural:
                return rt
        return None

    def group_versions(self):
        """{group: [versions]} in discovery order."""
        out = collections.OrderedDict()
        for g in BUILTIN_GROUP_ORDER:
            out[g] = []
        for rt in self.all_types():
            vs = out.setdefault(rt.group, [])
            if rt.version not in vs:
                vs.append(rt.version)
        return out

    def register_crd(self, crd):
        self.crd_rtypes[crd["metadata"]["name"]] = crd_types(crd)

    # ---- helpers -----------------------------------------------------------------------------

    def bucket(self, rt):
        return self.objects.setdefault(rt.storage, {})

    def notify(self):
        """Wake every watcher: resolve the current change future; the next waiter makes a new one."""
        if self.changed is not None and not self.changed.done():
            self.changed.set_result(None)
        self.changed = None

    def wait_future(self):
        if self.changed is None or self.changed.done():
            self.changed = asyncio.get_running_loop().create_future()
        return self.changed

    def record(self, storage, typ, old, new):
        self.log.append((self.rv, storage, typ, old, new))
        while len(self.log) > self.history:
            rv, *_ = self.log.popleft()
            self.log_base += 1
            self.log_floor = rv
        self.notify()

    def bump(self):
        self.rv += 1
        return str(self.rv)

    # ---- persistence -------------------------------------------------------------------------

    def load(self):
        loaded = False
        if self.state_file and os.path.exists(self.state_file):
            with open(self.state_file) as f:
                data = json.load(f)
            self.rv = int(data.get("resourceVersion", 0))
            self.next_ip = int(data.get("nextClusterIP", 10))
            for storage, objs in (data.get("objects") or {}).items():
                b = self.objects.setdefault(storage, {})
                for o in objs:
                    md = o.get("metadata", {})
                    b[(md.get("namespace", ""), md["name"])] = o
            for crd in self.objects.get("apiextensions.k8s.io/customresourcedefinitions", {}).values():
                self.register_crd(crd)
            loaded = True
        crds_rt = self.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        ns_rt = self.lookup("", "v1", "namespaces")
        if not loaded:
            for ns in PRECREATED_NAMESPACES:
                self.create(ns_rt, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                            persist=False)
            if not self.args.no_crd:
                self.create(crds_rt, None, hawser_crd(), persist=False)
        elif self.args.no_crd and HAWSER_CRD_NAME in self.crd_rtypes:
            self.delete(crds_rt, None, HAWSER_CRD_NAME, None, persist=False)
        self.log.clear()
        self.log_base = 0
        self.log_floor = self.rv
        self.persist()

    def persist(self):
        if not self.state_file:
            return
        data = {
            "resourceVersion": self.rv,
            "nextClusterIP": self.next_ip,
            "objects": {k: [v[key] for key in sorted(v)] for k, v in sorted(self.objects.items()) if v},
        }
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, self.state_file)

    # ---- object preparation ------------------------------------------------------------------

    def check_type(self, rt, body, strict=False):
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format - accepted media types include: application/json")
        av, kind = body.get("apiVersion"), body.get("kind")
        if strict and (not av or not kind):
            raise bad_request("invalid object type: %s, Kind=%s" % (av or "/", kind or ""))
        if av and av != rt.api_version:
            raise bad_request("the API version in the data (%s) does not match the expected API version (%s)"
                              % (av, rt.api_version))
        if kind and kind != rt.kind:
            raise bad_request("the kind in the data (%s) does not match the expected kind (%s)" % (kind, rt.kind))
        if not isinstance(body.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")

    def apply_defaults(self, rt, obj, old=None):
        spec = obj.get("spec")
        if rt.storage == "core/services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            for p in spec.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
                    if "port" in p:
                        p.setdefault("targetPort", p["port"])
            if old is not None:
                ospec = old.get("spec") or {}
                for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                    if k not in spec and k in ospec:
                        spec[k] = ospec[k]
            if spec["type"] != "ExternalName":
                if not spec.get("clusterIP"):
                    ip = "10.96.%d.%d" % (self.next_ip // 250, 1 + self.next_ip % 250)
                    self.next_ip += 1
                    spec["clusterIP"] = ip
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
                if spec["clusterIP"] != "None":
                    spec.setdefault("ipFamilies", ["IPv4"])
                    spec.setdefault("ipFamilyPolicy", "SingleStack")
                spec.setdefault("internalTrafficPolicy", "Cluster")
        elif rt.storage == "core/secrets":
            obj.setdefault("type", "Opaque")
            sd = obj.pop("stringData", None)
            if isinstance(sd, dict):
                data = obj.setdefault("data", {}) or {}
                obj["data"] = data
                for k, v in sd.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
        elif rt.storage == "discovery.k8s.io/endpointslices":
            for p in obj.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
                    p.setdefault("name", "")
        elif rt.storage == "core/namespaces":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            md = obj.setdefault("metadata", {})
            labels = md.get("labels") or {}
            labels["kubernetes.io/metadata.name"] = md.get("name", "")
            md["labels"] = labels
        elif rt.storage == "apiextensions.k8s.io/customresourcedefinitions" and isinstance(spec, dict):
            names = spec.setdefault("names", {})
            if names.get("kind"):
                names.setdefault("listKind", names["kind"] + "List")
                names.setdefault("singular", names["kind"].lower())
            for v in spec.get("versions") or []:
                if isinstance(v, dict):
                    v.setdefault("served", True)
            spec.setdefault("conversion", {"strategy": "None"})

    def initial_status(self, rt, obj):
        if rt.storage in ("core/services", "networking.k8s.io/ingresses"):
            return {"loadBalancer": {}}
        if rt.storage == "core/namespaces":
            return {"phase": "Active"}
        if rt.storage == "apiextensions.k8s.io/customresourcedefinitions":
            spec = obj.get("spec") or {}
            ts = now_rfc3339()
            storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
            return {
                "acceptedNames": copy.deepcopy(spec.get("names") or {}),
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": ts},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": ts},
                ],
                "storedVersions": storage,
            }
        return None

    def validate(self, rt, obj):
        md = obj["metadata"]
        name = md.get("name", "")
        if not NAME_RE.match(name) or len(name) > 253:
            raise invalid(rt, name, "metadata.name",
                          "Invalid value: \"%s\": a lowercase RFC 1123 subdomain must consist of lower case "
                          "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                          "character" % name)
        if rt.storage == "core/services" and (len(name) > 63 or not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", name)):
            raise invalid(rt, name, "metadata.name",
                          "Invalid value: \"%s\": a DNS-1035 label must consist of lower case alphanumeric "
                          "characters or '-', start with an alphabetic character, and end with an alphanumeric "
                          "character" % name)
        if rt.storage == "core/namespaces" and (len(name) > 63 or "." in name):
            raise invalid(rt, name, "metadata.name",
                          "Invalid value: \"%s\": a lowercase RFC 1123 label must consist of lower case "
                          "alphanumeric characters or '-', and must start and end with an alphanumeric character"
                          % name)
        for k, v in (md.get("labels") or {}).items():
            if not LABEL_NAME_RE.match(k) or not isinstance(v, str) or len(v) > 63 or \
                    not LABEL_VALUE_RE.match(v):
                raise invalid(rt, name, "metadata.labels", "Invalid value: \"%s\": invalid label" % v)
        for k, v in (md.get("annotations") or {}).items():
            if not isinstance(v, str):
                raise invalid(rt, name, "metadata.annotations", "Invalid value: annotation values must be strings")
        if rt.storage == "apiextensions.k8s.io/customresourcedefinitions":
            spec = obj.get("spec") or {}
            names = spec.get("names") or {}
            group = spec.get("group", "")
            if not group or not names.get("plural") or not names.get("kind"):
                raise invalid(rt, name, "spec", "Required value: group, names.plural and names.kind are required",
                              "FieldValueRequired")
            if name != "%s.%s" % (names["plural"], group):
                raise invalid(rt, name, "metadata.name",
                              'Invalid value: "%s": must be spec.names.plural+"."+spec.group' % name)
            versions = spec.get("versions") or []
            if sum(1 for v in versions if v.get("storage")) != 1:
                raise invalid(rt, name, "spec.versions", "Invalid value: must have exactly one version marked as storage version")
            if spec.get("scope") not in ("Namespaced", "Cluster"):
                raise invalid(rt, name, "spec.scope", 'Unsupported value: "%s": supported values: "Cluster", "Namespaced"'
                              % spec.get("scope"), "FieldValueNotSupported")

    @staticmethod
    def semantic(obj, drop):
        return {k: v for k, v in obj.items() if k not in drop and k not in ("apiVersion", "kind")}

    # ---- verbs -------------------------------------------------------------------------------

    def get(self, rt, ns, name):
        obj = self.bucket(rt).get((ns or "", name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def create(self, rt, ns, body, dry_run=False, persist=True):
        self.check_type(rt, body)
        obj = rt.to_int(copy.deepcopy(body))
        md = obj.setdefault("metadata", {})
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise invalid(rt, "", "metadata.name", "Required value: name or generateName is required",
                              "FieldValueRequired")
        name = md["name"]
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "selfLink", "managedFields", "generation"):
            md.pop(k, None)
        self.validate(rt, obj)
        key = (ns or "", name)
        if key in self.bucket(rt):
            raise already_exists(rt, name)
        if rt.status:
            st = self.initial_status(rt, obj)
            if st is None:
                obj.pop("status", None)
            else:
                obj["status"] = st
        self.apply_defaults(rt, obj)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if rt.generation:
            md["generation"] = 1
        if dry_run:
            return obj
        md["resourceVersion"] = self.bump()
        self.bucket(rt)[key] = obj
        if rt.storage == "apiextensions.k8s.io/customresourcedefinitions":
            self.register_crd(obj)
        self.record(rt.storage, "ADDED", None, obj)
        if persist:
            self.persist()
        return obj

    def update(self, rt, ns, name, body, subresource=None, dry_run=False, from_patch=False):
        """PUT semantics; PATCH lands here with the patched object."""
        self.check_type(rt, body)
        old = self.get(rt, ns, name)
        new_in = rt.to_int(copy.deepcopy(body))
        bmd = new_in.get("metadata") or {}
        if bmd.get("name") and bmd["name"] != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (bmd["name"], name))
        if rt.namespaced and bmd.get("namespace") and bmd["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        brv = bmd.get("resourceVersion")
        if brv and brv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        if not brv and not rt.unconditional_update and not from_patch:
            raise invalid(rt, name, "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")
        if bmd.get("uid") and bmd["uid"] != old["metadata"]["uid"]:
            raise conflict(rt, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                           % (old["metadata"]["uid"], bmd["uid"]))
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in new_in:
                new["status"] = new_in["status"]
            else:
                new.pop("status", None)
        else:
            new = new_in
            md = new.setdefault("metadata", {})
            omd = old["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if k in omd:
                    md[k] = omd[k]
                else:
                    md.pop(k, None)
            md.pop("managedFields", None)
            md.pop("selfLink", None)
            md["name"] = name
            if rt.namespaced:
                md["namespace"] = ns
            else:
                md.pop("namespace", None)
            if "generateName" in omd:
                md["generateName"] = omd["generateName"]
            else:
                md.pop("generateName", None)
            if rt.status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            self.apply_defaults(rt, new, old)
            self.validate(rt, new)
            if rt.generation:
                drop = {"metadata", "status"} if rt.status else {"metadata"}
                if self.semantic(new, drop) != self.semantic(old, drop):
                    md["generation"] = int(omd.get("generation", 0)) + 1
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        # An update that empties the finalizers of an object being deleted completes the deletion.
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if dry_run:
                return new
            return self._remove(rt, (ns or "", name), new)
        if new == old:
            return old  # a no-op write: no new resourceVersion, no event
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self.bump()
        self.bucket(rt)[(ns or "", name)] = new
        if rt.storage == "apiextensions.k8s.io/customresourcedefinitions":
            self.register_crd(new)
            self.notify()
        self.record(rt.storage, "MODIFIED", old, new)
        self.persist()
        return new

    def patch(self, rt, ns, name, ctype, raw, subresource=None, dry_run=False, field_manager=None):
        ctype = (ctype or "").split(";")[0].strip().lower()
        try:
            body = json.loads(raw.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError) as e:
            if ctype == "application/apply-patch+yaml":
                raise bad_request("error decoding YAML: this server accepts apply patches written as JSON only (%s)" % e)
            raise bad_request("error decoding patch: %s" % e)
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                         "application/json-patch+json", "application/apply-patch+yaml",
                         "application/apply-patch+cbor"):
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                           "media types include: application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml", {})
        if ctype == "application/strategic-merge-patch+json" and not rt.smp:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                           "media types include: application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml", {})
        if ctype == "application/apply-patch+yaml":
            if not field_manager:
                raise invalid(rt, name, "fieldManager", "Required value: is required for apply patch",
                              "FieldValueRequired")
            if not isinstance(body, dict):
                raise bad_request("apply patch must be an object")
            self.check_type(rt, body, strict=True)
            bmd = body.get("metadata") or {}
            if bmd.get("name") and bmd["name"] != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                  % (bmd["name"], name))
            if (ns or "", name) not in self.bucket(rt):
                if subresource:
                    raise not_found(rt, name)
                obj = copy.deepcopy(body)
                obj.setdefault("metadata", {})["name"] = name
                if obj["metadata"].get("resourceVersion"):
                    raise conflict(rt, name)
                return self.create(rt, ns, obj, dry_run=dry_run), 201
        elif ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise bad_request("json patch must be a list of operations")
        elif not isinstance(body, dict):
            raise bad_request("merge patch must be a JSON object")
        old = self.get(rt, ns, name)
        cur = rt.to_ext(old)
        if ctype == "application/json-patch+json":
            try:
                patched = json_patch(cur, body)
            except PatchError as e:
                raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: %s" % e,
                               {"name": name, "group": rt.group, "kind": rt.kind})
        elif ctype == "application/strategic-merge-patch+json":
            patched = strategic_merge_patch(cur, body)
        else:
            patched = merge_patch(cur, body)
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not an object")
        prv = (patched.get("metadata") or {}).get("resourceVersion")
        if prv and prv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        return self.update(rt, ns, name, patched, subresource, dry_run, from_patch=True), 200

    def delete(self, rt, ns, name, options, dry_run=False, persist=True):
        key = (ns or "", name)
        old = self.get(rt, ns, name)
        pre = (options or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise conflict(rt, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                           % (pre["uid"], old["metadata"]["uid"]))
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name, "Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in "
                           "object meta: %s" % (pre["resourceVersion"], old["metadata"]["resourceVersion"]))
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old, 202
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if new["metadata"].get("generation"):
                new["metadata"]["generation"] += 1
            if dry_run:
                return new, 202
            new["metadata"]["resourceVersion"] = self.bump()
            self.bucket(rt)[key] = new
            self.record(rt.storage, "MODIFIED", old, new)
            if persist:
                self.persist()
            return new, 202
        if dry_run:
            return old, 200
        gone = self._remove(rt, key, old, persist=persist)
        return gone, 200

    def _remove(self, rt, key, last, persist=True):
        """Remove an object for good (and what depends on it): DELETED events, state saved."""
        old = self.bucket(rt).pop(key)
        gone = copy.deepcopy(last)
        gone["metadata"]["resourceVersion"] = self.bump()
        self.record(rt.storage, "DELETED", old, gone)
        if rt.storage == "core/namespaces":
            ns = key[1]
            for storage, objs in list(self.objects.items()):
                for k in [k for k in objs if k[0] == ns and k[0]]:
                    o = objs.pop(k)
                    g = copy.deepcopy(o)
                    g["metadata"]["resourceVersion"] = self.bump()
                    self.record(storage, "DELETED", o, g)
        if rt.storage == "apiextensions.k8s.io/customresourcedefinitions":
            types = self.crd_rtypes.pop(key[1], [])
            if types:
                storage = types[0].storage
                for k, o in sorted(self.objects.pop(storage, {}).items()):
                    g = copy.deepcopy(o)
                    g["metadata"]["resourceVersion"] = self.bump()
                    self.record(storage, "DELETED", o, g)
            self.notify()
        if persist:
            self.persist()
        return gone

    def list(self, rt, ns, lsel, fsel):
        out = []
        for key in sorted(self.bucket(rt)):
            if rt.namespaced and ns and key[0] != ns:
                continue
            obj = self.bucket(rt)[key]
            ext = rt.to_ext(obj)
            if labels_match(lsel, (ext.get("metadata") or {}).get("labels")) and fields_match(fsel, ext):
                out.append(ext)
        return out


# ---------------------------------------------------------------------------------------------
# HTTP


REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Request Entity Too Large",
           415: "Unsupported Media Type", 422: "Unprocessable Entity", 500: "Internal Server Error",
           504: "Gateway Timeout"}


class Request:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def q(self, name, default=None):
        v = self.query.get(name)
        return v[-1] if v else default

    def flag(self, name):
        return (self.q(name) or "").lower() in ("true", "1")


class Response:
    def __init__(self, code, body, ctype="application/json"):
        self.code = code
        self.body = body
        self.ctype = ctype


def encode(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class Server:
    def __init__(self, args):
        self.args = args
        self.store = Store(args)
        self.port = None

    def log(self, msg):
        if self.args.log_requests:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    # ---- connection handling -----------------------------------------------------------------

    async def handle(self, reader, writer):
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    break
                if not line:
                    break
                if line in (b"\r\n", b"\n"):
                    continue
                try:
                    method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                except ValueError:
                    await self.write_response(writer, Response(400, encode(bad_request("malformed request line").status())), False)
                    break
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                keep_alive = version.upper() == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = b""
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    parts, total = [], 0
                    while True:
                        size_line = await reader.readline()
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        total += size
                        if total > MAX_BODY:
                            await self.write_response(writer, Response(413, encode(ApiError(
                                413, "RequestEntityTooLarge", "the request body is too large").status())), False)
                            return
                        parts.append(await reader.readexactly(size))
                        await reader.readline()
                    body = b"".join(parts)
                else:
                    n = int(headers.get("content-length", "0") or 0)
                    if n > MAX_BODY:
                        await self.write_response(writer, Response(413, encode(ApiError(
                            413, "RequestEntityTooLarge", "the request body is too large").status())), False)
                        return
                    if n:
                        body = await reader.readexactly(n)
                u = urllib.parse.urlsplit(target)
                req = Request(method.upper(), urllib.parse.unquote(u.path), urllib.parse.parse_qs(u.query, keep_blank_values=True),
                              headers, body)
                self.log("%s %s" % (method, target))
                try:
                    resp = await self.dispatch(req, reader, writer)
                except ApiError as e:
                    resp = Response(e.code, encode(e.status()))
                except Exception as e:  # a bug here must not take the server down
                    import traceback
                    traceback.print_exc(file=sys.stderr)
                    resp = Response(500, encode(ApiError(500, "InternalError", "internal error: %r" % e).status()))
                if resp is None:  # a watch stream: it wrote its own response and the connection closes
                    break
                await self.write_response(writer, resp, keep_alive)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def write_response(self, writer, resp, keep_alive):
        head = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-cache, private\r\n" \
               "Date: %s\r\n%s\r\n" % (
                   resp.code, REASONS.get(resp.code, "Status"), resp.ctype, len(resp.body),
                   time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
                   "" if keep_alive else "Connection: close\r\n")
        writer.write(head.encode("latin-1") + resp.body)
        await writer.drain()

    # ---- routing -----------------------------------------------------------------------------

    async def dispatch(self, req, reader, writer):
        parts = [p for p in req.path.split("/") if p]
        if req.path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if parts == ["version"]:
            return Response(200, encode(SERVER_VERSION))
        if parts == ["api"]:
            return self.ok({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % self.port}]})
        if parts == ["apis"]:
            return self.ok({"kind": "APIGroupList", "apiVersion": "v1",
                            "groups": [self.api_group(g, vs) for g, vs in self.store.group_versions().items() if g and vs]})
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) == 2 and parts[0] == "apis":
            vs = self.store.group_versions().get(parts[1])
            if not vs:
                raise resource_not_found()
            return self.ok(dict(self.api_group(parts[1], vs), kind="APIGroup", apiVersion="v1"))
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise resource_not_found()
        if version not in self.store.group_versions().get(group, []):
            raise resource_not_found()
        if not rest:
            if req.method != "GET":
                raise method_not_allowed()
            return self.ok(self.resource_list(group, version))
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        if not rest:
            raise resource_not_found()
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3:
            raise resource_not_found()
        rt = self.store.lookup(group, version, plural)
        if rt is None:
            raise resource_not_found()
        if ns is not None and not rt.namespaced:
            raise resource_not_found()
        if name is not None and rt.namespaced and ns is None:
            raise resource_not_found()
        if sub is not None and not (sub == "status" and rt.status):
            raise resource_not_found()
        dry = "All" in (req.query.get("dryRun") or [])
        m = req.method
        if name is None:
            if m == "GET":
                if watch_path or req.flag("watch"):
                    await self.watch(req, rt, ns, writer, reader)
                    return None
                return self.list(req, rt, ns)
            if watch_path:
                raise method_not_allowed()
            if m == "POST":
                if rt.namespaced and ns is None:
                    raise method_not_allowed()
                obj = self.store.create(rt, ns, self.json_body(req), dry_run=dry)
                return self.ok(rt.to_ext(obj), 201)
            if m == "DELETE":
                return self.delete_collection(req, rt, ns, dry)
            raise method_not_allowed()
        if watch_path:
            if m != "GET" or sub:
                raise method_not_allowed()
            req.query["fieldSelector"] = ["metadata.name=%s" % name]
            await self.watch(req, rt, ns, writer, reader)
            return None
        if m == "GET":
            if req.flag("watch"):
                req.query["fieldSelector"] = ["metadata.name=%s" % name]
                await self.watch(req, rt, ns, writer, reader)
                return None
            obj = self.store.get(rt, ns, name)
            return self.ok(self.view(req, rt, rt.to_ext(obj)))
        if m == "PUT":
            obj = self.store.update(rt, ns, name, self.json_body(req), sub, dry)
            return self.ok(rt.to_ext(obj))
        if m == "PATCH":
            obj, code = self.store.patch(rt, ns, name, req.headers.get("content-type"), req.body, sub, dry,
                                         req.q("fieldManager"))
            return self.ok(rt.to_ext(obj), code)
        if m == "DELETE":
            if sub:
                raise method_not_allowed()
            options = self.json_body(req) if req.body.strip() else {}
            for k in ("gracePeriodSeconds", "propagationPolicy"):
                if req.q(k) is not None and k not in options:
                    options[k] = req.q(k)
            obj, code = self.store.delete(rt, ns, name, options, dry_run=dry)
            if code == 200 and not rt.returns_object:
                return self.ok({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                            "uid": obj["metadata"]["uid"]}})
            return self.ok(rt.to_ext(obj), code)
        raise method_not_allowed()

    def ok(self, obj, code=200):
        return Response(code, encode(obj))

    def json_body(self, req):
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "", "*/*"):
            raise ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json (this server speaks JSON only, not "%s")'
                           % ctype, {})
        try:
            obj = json.loads(req.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request("the body of the request was in an unknown format - accepted media types include: "
                              "application/json (%s)" % e)
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        return obj

    # ---- discovery ---------------------------------------------------------------------------

    def api_group(self, group, versions):
        gvs = [{"groupVersion": "%s/%s" % (group, v), "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def resource_list(self, group, version):
        res = []
        for rt in self.store.all_types():
            if rt.group != group or rt.version != version:
                continue
            e = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
                 "verbs": list(ALL_VERBS)}
            if rt.short:
                e["shortNames"] = list(rt.short)
            if rt.categories:
                e["categories"] = list(rt.categories)
            res.append(e)
            if rt.status:
                res.append({"name": rt.plural + "/status", "singularName": "", "namespaced": rt.namespaced,
                            "kind": rt.kind, "verbs": list(STATUS_VERBS)})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "%s/%s" % (group, version) if group else version, "resources": res}

    # ---- list / watch ------------------------------------------------------------------------

    def parse_rv(self, s):
        if s in (None, ""):
            return None
        try:
            n = int(s)
            if n < 0:
                raise ValueError
            return n
        except ValueError:
            raise bad_request('resourceVersion: Invalid value: "%s": must be a non-negative integer' % s)

    def list(self, req, rt, ns):
        lsel = parse_label_selector(req.q("labelSelector"))
        fsel = parse_field_selector(req.q("fieldSelector"), rt)
        rv = self.parse_rv(req.q("resourceVersion"))
        match = req.q("resourceVersionMatch")
        if match and match not in ("Exact", "NotOlderThan"):
            raise bad_request('resourceVersionMatch: Unsupported value: "%s"' % match)
        if match and rv is None:
            raise ApiError(422, "Invalid", "resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match == "Exact" and rv is not None and rv != self.store.rv:
            if rv < self.store.rv:
                raise expired("The resourceVersion for the provided list is too old.")
            raise too_large_rv(rv, self.store.rv)
        if rv is not None and rv > self.store.rv:
            raise too_large_rv(rv, self.store.rv)
        list_rv = self.store.rv
        items = self.store.list(rt, ns, lsel, fsel)
        meta = {"resourceVersion": str(list_rv)}
        limit = req.q("limit")
        cont = req.q("continue")
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont.encode()).decode())
                start, list_rv = tok["start"], tok["rv"]
            except Exception:
                raise bad_request("continue key is not valid")
            if list_rv < self.store.log_floor:
                raise expired("The provided continue parameter is too old to display a consistent list result. "
                              "You can start a new list without the continue parameter.")
            meta["resourceVersion"] = str(list_rv)
            items = [i for i in items if [i["metadata"].get("namespace", ""), i["metadata"]["name"]] > start]
        if limit:
            try:
                n = int(limit)
            except ValueError:
                raise bad_request("limit must be an integer")
            if 0 < n < len(items):
                last = items[n - 1]["metadata"]
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"rv": list_rv, "start": [last.get("namespace", ""), last["name"]]}).encode()).decode()
                meta["remainingItemCount"] = len(items) - n
                items = items[:n]
        mode = self.view_mode(req)
        if mode == "Table":
            return self.ok(self.table(rt, items, meta))
        if mode == "PartialObjectMetadata":
            return self.ok({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": meta,
                            "items": [self.partial(i) for i in items]})
        return self.ok({"apiVersion": rt.api_version, "kind": rt.list_kind, "metadata": meta, "items": items})

    @staticmethod
    def view_mode(req):
        """What the Accept header asks for: a Table (kubectl), PartialObjectMetadata (metadata-only
        clients) or, by default, the objects themselves."""
        for part in req.headers.get("accept", "").split(","):
            params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
            if params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
                if params.get("as") == "Table":
                    return "Table"
                if params.get("as") in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                    return "PartialObjectMetadata"
            elif part.split(";")[0].strip() in ("application/json", "*/*", "application/*"):
                return None
        return None

    def view(self, req, rt, ext, mode=None):
        mode = mode or self.view_mode(req)
        if mode == "Table":
            return self.table(rt, [ext], None)
        if mode == "PartialObjectMetadata":
            return self.partial(ext)
        return ext

    @staticmethod
    def partial(ext):
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": ext.get("metadata", {})}

    def table(self, rt, items, meta):
        cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        pcs = [c for c in rt.printer_columns]
        for c in pcs:
            cols.append({"name": c.get("name"), "type": c.get("type", "string"), "format": c.get("format", ""),
                         "description": c.get("description", ""), "priority": c.get("priority", 0)})
        rows = []
        for it in items:
            md = it.get("metadata", {})
            cells = [md.get("name")]
            for c in pcs:
                typ = c.get("type", "string")
                if typ == "date" and not (rt.crd or c.get("name", "").lower() == "age"):
                    typ = "string"  # e.g. the CRD table's "Created At": a timestamp, not an age
                cells.append(cell(simple_jsonpath(it, c.get("jsonPath", "")), typ))
            rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                    "metadata": md}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta or {},
                "columnDefinitions": cols, "rows": rows}

    def delete_collection(self, req, rt, ns, dry):
        lsel = parse_label_selector(req.q("labelSelector"))
        fsel = parse_field_selector(req.q("fieldSelector"), rt)
        options = self.json_body(req) if req.body.strip() else {}
        out = []
        for ext in self.store.list(rt, ns, lsel, fsel):
            md = ext["metadata"]
            try:
                obj, _ = self.store.delete(rt, md.get("namespace"), md["name"], options, dry_run=dry)
                out.append(rt.to_ext(obj))
            except ApiError:
                pass
        return self.ok({"apiVersion": rt.api_version, "kind": rt.list_kind,
                        "metadata": {"resourceVersion": str(self.store.rv)}, "items": out})

    async def watch(self, req, rt, ns, writer, reader):
        st = self.store
        lsel = parse_label_selector(req.q("labelSelector"))
        fsel = parse_field_selector(req.q("fieldSelector"), rt)
        rv = self.parse_rv(req.q("resourceVersion"))
        bookmarks = req.flag("allowWatchBookmarks")
        sie = req.q("sendInitialEvents")
        match = req.q("resourceVersionMatch")
        if sie is not None:
            if match != "NotOlderThan":
                raise ApiError(422, "Invalid", "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                               "resourceVersionMatch to NotOlderThan")
            if sie.lower() == "true" and not bookmarks:
                raise ApiError(422, "Invalid", "allowWatchBookmarks: Forbidden: sendInitialEvents requires "
                               "allowWatchBookmarks=true")
        elif match:
            raise ApiError(422, "Invalid", "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for "
                           "watch unless sendInitialEvents is provided")
        try:
            timeout = float(req.q("timeoutSeconds") or self.args.watch_timeout)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number")
        if rv is not None and rv > st.rv:
            # like the watch cache: wait a little for the resourceVersion to arrive
            deadline = time.monotonic() + 3
            while rv > st.rv and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(asyncio.shield(st.wait_future()), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    pass
            if rv > st.rv:
                raise too_large_rv(rv, st.rv)
        send_initial = (sie or "").lower() == "true" or (sie is None and (rv is None or rv == 0))
        writer.write(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                      "Cache-Control: no-cache, private\r\nConnection: close\r\nDate: %s\r\n\r\n"
                      % time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())).encode())

        mode = self.view_mode(req)

        def chunk(ev):
            if ev["type"] in ("ADDED", "MODIFIED", "DELETED") and mode:
                ev = {"type": ev["type"], "object": self.view(req, rt, ev["object"], mode)}
            data = encode(ev) + b"\n"
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))

        def bookmark(cursor, initial_end=False):
            md = {"resourceVersion": str(cursor)}
            if initial_end:
                md["annotations"] = {"k8s.io/initial-events-end": "true"}
            kind, api_version = (rt.kind, rt.api_version) if mode is None else (mode, "meta.k8s.io/v1")
            chunk({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": md}})

        def matches(ext):
            if ext is None:
                return False
            md = ext.get("metadata") or {}
            if rt.namespaced and ns and md.get("namespace") != ns:
                return False
            return labels_match(lsel, md.get("labels")) and fields_match(fsel, ext)

        eof = asyncio.ensure_future(reader.read(1))
        try:
            if send_initial:
                for ext in st.list(rt, ns, lsel, fsel):
                    chunk({"type": "ADDED", "object": ext})
                cursor = st.rv
                pos = st.log_base + len(st.log)
                if (sie or "").lower() == "true":
                    bookmark(cursor, initial_end=True)
                elif bookmarks:
                    bookmark(cursor)
            else:
                if rv is None:  # sendInitialEvents=false without a resourceVersion: from now on
                    rv = st.rv
                if rv < st.log_floor:
                    chunk({"type": "ERROR", "object": expired("too old resource version: %d (%d)"
                                                              % (rv, st.log_floor)).status()})
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return
                cursor = rv
                # first log entry with rv > cursor
                pos = st.log_base
                for i, e in enumerate(st.log):
                    if e[0] > cursor:
                        pos = st.log_base + i
                        break
                else:
                    pos = st.log_base + len(st.log)
            await writer.drain()
            start = time.monotonic()
            deadline = start + timeout
            interval = self.args.bookmark_interval
            next_bm = start + interval
            sent_start_bm = send_initial
            while True:
                if pos < st.log_base:
                    chunk({"type": "ERROR", "object": expired("too old resource version: %d (%d)"
                                                              % (cursor, st.log_floor)).status()})
                    break
                while pos < st.log_base + len(st.log):
                    erv, storage, typ, old, new = st.log[pos - st.log_base]
                    pos += 1
                    cursor = erv
                    if storage != rt.storage:
                        continue
                    old_ext = rt.to_ext(old) if old is not None and typ != "ADDED" else None
                    new_ext = rt.to_ext(new)
                    if typ == "ADDED":
                        if matches(new_ext):
                            chunk({"type": "ADDED", "object": new_ext})
                    elif typ == "MODIFIED":
                        was, now = matches(old_ext), matches(new_ext)
                        if was and now:
                            chunk({"type": "MODIFIED", "object": new_ext})
                        elif now:
                            chunk({"type": "ADDED", "object": new_ext})
                        elif was:
                            old_ext["metadata"]["resourceVersion"] = str(erv)
                            chunk({"type": "DELETED", "object": old_ext})
                    elif typ == "DELETED":
                        if matches(new_ext):
                            chunk({"type": "DELETED", "object": new_ext})
                cursor = max(cursor, st.rv) if pos == st.log_base + len(st.log) else cursor
                if rt.crd and st.lookup(rt.group, rt.version, rt.plural) is None:
                    break  # the CRD went away: the real server ends such watches
                now = time.monotonic()
                if bookmarks and (not sent_start_bm or now >= next_bm):
                    bookmark(cursor)
                    sent_start_bm = True
                    next_bm = now + interval
                await writer.drain()
                if now >= deadline:
                    break
                wait = deadline - now
                if bookmarks:
                    wait = min(wait, max(0.0, next_bm - now))
                fut = st.wait_future()
                done, _ = await asyncio.wait({fut, eof}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if eof in done:
                    return
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not eof.done():
                eof.cancel()


# ---------------------------------------------------------------------------------------------


async def main_async(args):
    server = Server(args)
    server.store.load()
    srv = await asyncio.start_server(server.handle, "127.0.0.1", args.port, limit=1024 * 1024, backlog=256)
    server.port = srv.sockets[0].getsockname()[1]
    sys.stdout.write("listening on 127.0.0.1:%d\n" % server.port)
    sys.stdout.flush()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    srv.close()
    server.store.persist()


def main():
    p = argparse.ArgumentParser(description="A stand-in Kubernetes API server for hawser's tests.")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--state", help="load objects from FILE at start and write them to it on every change")
    p.add_argument("--no-crd", action="store_true",
                   help="start without the WebSocketRoute CRD (hawser.dev/v1alpha1 is not served)")
    p.add_argument("--watch-timeout", type=float, default=1800,
                   help="seconds a watch without timeoutSeconds stays open (default 1800)")
    p.add_argument("--bookmark-interval", type=float, default=2.0,
                   help="seconds between BOOKMARK events on watches that allow them (default 2)")
    p.add_argument("--history", type=int, default=10000,
                   help="change events kept for watches that resume from a resourceVersion; an older one gets "
                        "410 Gone (default 10000)")
    p.add_argument("--log-requests", action="store_true", help="log each request line to stderr")
    args = p.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
