"""Manifests the e2e scripts share: the echo backend as a Service with one EndpointSlice
(`ECHO_PORT` is replaced with its port), and a TLS Secret for localhost (`CERT`, `KEY`)."""

ECHO_SERVICE = """apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: ECHO_PORT}]
endpoints: [{addresses: ["127.0.0.1"]}]
---
"""

LOCALHOST_TLS = """apiVersion: v1
kind: Secret
metadata: {name: localhost-tls}
type: kubernetes.io/tls
stringData:
  tls.crt: CERT
  tls.key: KEY
---
"""
