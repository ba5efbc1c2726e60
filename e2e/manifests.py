"""Manifests the e2e scripts share: a Service with one EndpointSlice on loopback (the echo
backend's: `ECHO_PORT` is replaced with its port), and a TLS Secret for localhost (`CERT`,
`KEY`)."""


def service(name, port):
    """A selector-less Service `name` (port `http` 80) with one EndpointSlice listing
    127.0.0.1:`port` (a number, or a placeholder the script replaces)."""
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
---
"""


ECHO_SERVICE = service("echo", "ECHO_PORT")

LOCALHOST_TLS = """apiVersion: v1
kind: Secret
metadata: {name: localhost-tls}
type: kubernetes.io/tls
stringData:
  tls.crt: CERT
  tls.key: KEY
---
"""
