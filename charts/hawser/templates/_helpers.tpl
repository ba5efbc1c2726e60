{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "hawser.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, unless it lacks the chart name. */}}
{{- define "hawser.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hawser.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the controller's pods. */}}
{{- define "hawser.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hawser.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "hawser.labels" -}}
helm.sh/chart: {{ include "hawser.chart" . }}
{{ include "hawser.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hawser.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hawser.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hawser.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
RBAC rules for the namespaced resources hawser reads and writes (charts/hawser/rbac-required.json,
scope "cluster"): granted by a ClusterRole, or by a Role in watchNamespace when it is set.
*/}}
{{- define "hawser.namespacedRules" -}}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["hawser.dev"]
  resources: ["websocketroutes", "websocketpolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["hawser.dev"]
  resources: ["websocketroutes/status", "websocketpolicies/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways", "httproutes", "referencegrants", "backendtlspolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways/status", "httproutes/status", "backendtlspolicies/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["services", "secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Cluster-scoped resources: always a ClusterRole. */}}
{{- define "hawser.clusterRules" -}}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingressclasses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* The `hawser run` flags of the Kubernetes mode. */}}
{{- define "hawser.args" -}}
- run
- --http-addr=0.0.0.0:8080
- --https-addr=0.0.0.0:8443
- --admin-addr=0.0.0.0:9090
- --ingress-class={{ .Values.ingressClass.name }}
- --controller-name={{ .Values.ingressClass.controller }}
- --gateway-controller-name={{ .Values.gatewayClass.controller }}
- --publish-service={{ .Release.Namespace }}/{{ include "hawser.fullname" . }}
{{- with .Values.watchNamespace }}
- --watch-namespace={{ . }}
{{- end }}
{{- with .Values.defaultSslCertificate }}
- --default-ssl-certificate={{ . }}
{{- end }}
{{- if .Values.proxyProtocol }}
- --proxy-protocol
{{- end }}
- --log-format={{ .Values.logFormat }}
- --shutdown-grace={{ .Values.shutdownGrace }}
- --shutdown-delay={{ .Values.shutdownDelay }}
{{- with .Values.drainWindow }}
- --drain-window={{ . }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The Secret holding the session-affinity key (`affinity-key`). */}}
{{- define "hawser.affinityKeySecret" -}}
{{- .Values.affinityKey.existingSecret | default (printf "%s-affinity-key" (include "hawser.fullname" .)) }}
{{- end }}
