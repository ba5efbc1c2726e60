#!/usr/bin/env bash
# hawser on a real cluster: install the chart, apply the example chat route, check that traffic
# flows over HTTP and WebSocket through the load balancer, that status and conditions appear, and
# that a bad annotation produces a Warning Event; with HAWSER_CONFORMANCE=1, also the upstream
# Gateway API conformance suite. Cleans up after itself.
#
#   KUBECONFIG=~/.kube/config e2e/cluster.sh [IMAGE]
#
# IMAGE is what the cluster runs: REPOSITORY:TAG (e.g. registry.example.com/hawser:dev, pushed
# there beforehand), or a bare TAG of ghcr.io/hawser-dev/hawser. Without it: on a kind cluster
# (current context kind-*) with a working docker, the image is built from the Dockerfile and
# loaded into kind (`kind load docker-image`); anywhere else the chart's default image is used,
# ghcr.io/hawser-dev/hawser:<appVersion>, which exists once that version is released.
#
# Needs kubectl, helm, python3 with `websockets`, (for kind) docker and kind, and a cluster whose
# LoadBalancer Services get an address (or set HAWSER_ADDRESS to reach the Service another way,
# e.g. a port-forward). Does nothing without KUBECONFIG.
set -euo pipefail
: "${KUBECONFIG:?set KUBECONFIG to run against a real cluster}"
cd "$(dirname "$0")/.."
IMAGE=${1:-}
NS=hawser-e2e
APPS=hawser-e2e-apps
CONTEXT=$(kubectl config current-context 2>/dev/null || true)

if [ -z "$IMAGE" ] && [[ "$CONTEXT" == kind-* ]] && command -v docker >/dev/null 2>&1 \
    && docker info >/dev/null 2>&1; then
  IMAGE="hawser:e2e-$(git rev-parse --short HEAD 2>/dev/null || echo local)"
  echo "kind cluster ${CONTEXT#kind-}: building $IMAGE and loading it into the cluster"
  docker build -t "$IMAGE" .
  kind load docker-image "$IMAGE" --name "${CONTEXT#kind-}"
fi
IMAGE_SETS=()                               # empty: the chart's default image
if [[ "${IMAGE##*/}" == *:* ]]; then          # REPOSITORY:TAG (a registry port is not a tag)
  IMAGE_SETS=(--set "image.repository=${IMAGE%:*}" --set "image.tag=${IMAGE##*:}")
elif [[ "$IMAGE" == */* ]]; then              # REPOSITORY: the chart's appVersion as tag
  IMAGE_SETS=(--set "image.repository=$IMAGE")
elif [ -n "$IMAGE" ]; then                    # TAG of ghcr.io/hawser-dev/hawser
  IMAGE_SETS=(--set "image.tag=$IMAGE")
fi

cleanup() {
  kubectl delete namespace "$APPS" --ignore-not-found --wait=false
  helm uninstall hawser --namespace "$NS" || true
  kubectl delete namespace "$NS" --ignore-not-found --wait=false
}
trap cleanup EXIT

helm upgrade --install hawser charts/hawser --namespace "$NS" --create-namespace \
  "${IMAGE_SETS[@]}" --wait --timeout 5m
kubectl -n "$NS" rollout status deployment/hawser --timeout=3m

kubectl create namespace "$APPS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$APPS" apply -f manifests/examples/chat-websocketroute.yaml
kubectl -n "$APPS" wait --for=condition=Available deployment --all --timeout=3m
kubectl -n "$APPS" wait --for=condition=Accepted websocketroute --all --timeout=2m
kubectl -n "$APPS" get websocketroutes

ADDRESS=${HAWSER_ADDRESS:-}
for _ in $(seq 60); do
  [ -n "$ADDRESS" ] && break
  ADDRESS=$(kubectl -n "$NS" get service hawser -o jsonpath='{.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}')
  sleep 5
done
[ -n "$ADDRESS" ] || { echo "the hawser Service got no address"; exit 1; }
HOST=$(kubectl -n "$APPS" get websocketroute -o jsonpath='{.items[0].spec.hostnames[0]}')
WSPATH=$(kubectl -n "$APPS" get websocketroute -o jsonpath='{.items[0].spec.rules[0].matches[0].path.value}')

python3 - "$ADDRESS" "$HOST" "$WSPATH" <<'PY'
import asyncio, sys, websockets
address, host, path = sys.argv[1:]
async def main():
    async with websockets.connect(f"ws://{address}{path}", additional_headers={"Host": host}) as ws:
        await ws.send("hello from e2e")
        reply = await asyncio.wait_for(ws.recv(), 10)
        assert reply == "hello from e2e", reply
    print("websocket: ok")
asyncio.run(main())
PY

# A bad annotation on an Ingress: a Warning Event on it, and ADDRESS on the good one.
kubectl -n "$APPS" apply -f manifests/examples/ingress-hawser.yaml
INGRESS=$(kubectl -n "$APPS" get ingress -o jsonpath='{.items[0].metadata.name}')
for _ in $(seq 30); do
  [ -n "$(kubectl -n "$APPS" get ingress "$INGRESS" -o jsonpath='{.status.loadBalancer.ingress[0]}')" ] && break
  sleep 2
done
kubectl -n "$APPS" get ingress "$INGRESS"
kubectl -n "$APPS" annotate ingress "$INGRESS" hawser.dev/idle-timeout=soon --overwrite
for _ in $(seq 30); do
  kubectl -n "$APPS" get events --field-selector type=Warning,involvedObject.name="$INGRESS" -o name | grep -q . && break
  sleep 2
done
kubectl -n "$APPS" get events --field-selector type=Warning,involvedObject.name="$INGRESS"
# The upstream Gateway API conformance suite (kubernetes-sigs/gateway-api v1.5.1, the HTTP
# profile: the features tests/gateway_api.rs ports, run for real) against this install. Opt in
# with HAWSER_CONFORMANCE=1: it needs git and Go 1.24+, pods that run the suite's echo images,
# and about 20 minutes. The report lands in conformance-report.yaml.
if [ "${HAWSER_CONFORMANCE:-}" = 1 ]; then
  helm upgrade hawser charts/hawser --namespace "$NS" --reuse-values \
    --set gatewayClass.create=true --set gatewayClass.installCRDs=true --wait --timeout 5m
  kubectl wait --for=condition=Accepted gatewayclass/hawser --timeout=2m
  SUITE=$(mktemp -d)
  git clone --quiet --depth 1 --branch v1.5.1 https://github.com/kubernetes-sigs/gateway-api "$SUITE"
  FEATURES=Gateway,HTTPRoute,ReferenceGrant,HTTPRouteQueryParamMatching,HTTPRouteMethodMatching
  FEATURES=$FEATURES,HTTPRouteResponseHeaderModification,HTTPRoutePortRedirect,HTTPRouteSchemeRedirect
  FEATURES=$FEATURES,HTTPRoutePathRedirect,HTTPRouteHostRewrite,HTTPRoutePathRewrite
  FEATURES=$FEATURES,HTTPRouteBackendProtocolWebSocket,GatewayHTTPListenerIsolation
  (cd "$SUITE" && go test ./conformance -run TestConformance -timeout 60m -args \
    --gateway-class=hawser --supported-features="$FEATURES" --cleanup-base-resources=true \
    --organization=hawser --project=hawser --url=https://github.com/hawser-dev/hawser \
    --version="$(git -C "$OLDPWD" describe --always)" --contact=https://github.com/hawser-dev/hawser/issues \
    --report-output="$OLDPWD/conformance-report.yaml")
  rm -rf "$SUITE"
  echo "gateway api conformance: passed (report: conformance-report.yaml)"
fi
echo "e2e on the cluster: 1 passed, 0 failed"
