{{/*
Naming, labels and shared pieces of the Parley chart.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "parley.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name, at most 63 characters (a DNS label). A release
whose name already contains the chart name is used as is, so release
"parley" gives "parley", and the node StatefulSet "parley-node".
*/}}
{{- define "parley.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "parley.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "parley.labels" -}}
helm.sh/chart: {{ include "parley.chart" . }}
{{ include "parley.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: parley
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the release's pods (never change them on upgrade). */}}
{{- define "parley.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parley.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Names of the two components' objects (63 characters at most). */}}
{{- define "parley.node.fullname" -}}
{{- printf "%s-node" (include "parley.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{- define "parley.gateway.fullname" -}}
{{- printf "%s-gateway" (include "parley.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* Selector labels of node pods. */}}
{{- define "parley.node.selectorLabels" -}}
{{ include "parley.selectorLabels" . }}
app.kubernetes.io/component: node
{{- end }}

{{/* Selector labels of gateway pods. */}}
{{- define "parley.gateway.selectorLabels" -}}
{{ include "parley.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The ServiceAccount both components run as. */}}
{{- define "parley.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "parley.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}; the tag defaults to the
chart's appVersion. Call with (dict "image" .Values.node.image "root" $).
*/}}
{{- define "parley.image" -}}
{{- $tag := default .root.Chart.AppVersion (toString (.image.tag | default "")) }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the JWT signing key, and its key. */}}
{{- define "parley.auth.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-auth" (include "parley.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "parley.auth.secretKey" -}}
{{- default "jwt-secret" .Values.auth.existingSecretKey }}
{{- end }}

{{/* "true" when gateways take HS256 tokens signed with the auth Secret's key. */}}
{{- define "parley.auth.useSecret" -}}
{{- if and .Values.auth.enabled (or .Values.auth.jwtSecret .Values.auth.existingSecret (not .Values.auth.jwks.configMap)) }}true{{- end }}
{{- end }}

{{/* The name node certificates are checked against. */}}
{{- define "parley.tls.serverName" -}}
{{- default (include "parley.node.fullname" .) .Values.tls.serverName }}
{{- end }}

{{/* mTLS flags of nodes and gateways, from the mounted Secret. */}}
{{- define "parley.tlsEnv" -}}
{{- if .Values.tls.enabled }}
- name: PARLEY_TLS_CERT
  value: /etc/parley/tls/tls.crt
- name: PARLEY_TLS_KEY
  value: /etc/parley/tls/tls.key
- name: PARLEY_TLS_CA
  value: /etc/parley/tls/ca.crt
- name: PARLEY_TLS_SERVER_NAME
  value: {{ include "parley.tls.serverName" . | quote }}
{{- end }}
{{- end }}

{{/*
checkov skips of a workload, each with its reason (checkov reads them from
the object's annotations). Call with (dict "image" .Values.node.image "root" $).
*/}}
{{- define "parley.checkovSkips" -}}
{{- $root := .root }}
checkov.io/skip1: CKV_K8S_15=Pull policy IfNotPresent is right for images pinned by digest or a release tag, and keeps images loaded into kind/minikube usable
{{- if not .image.digest }}
checkov.io/skip2: CKV_K8S_43=The image is built and loaded locally (make up, skaffold, kind load); set image.digest when pulling from a registry
{{- end }}
{{- if $root.Values.serviceAccount.automountServiceAccountToken }}
checkov.io/skip3: CKV_K8S_38=Kubernetes discovery watches the node EndpointSlices with this token; its Role allows only get/list/watch on EndpointSlices
{{- end }}
{{- end }}

{{/* Pod-level security context shared by every pod of the chart. */}}
{{- define "parley.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Container-level security context shared by every container. */}}
{{- define "parley.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Prometheus scrape annotations for pods, when enabled. */}}
{{- define "parley.scrapeAnnotations" -}}
{{- if .Values.monitoring.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metricsPort | quote }}
prometheus.io/path: "/metrics"
{{- end }}
{{- end }}

{{/* Environment shared by nodes and gateways: discovery and cluster settings. */}}
{{- define "parley.clusterEnv" -}}
- name: PARLEY_DISCOVERY
  value: kubernetes
- name: PARLEY_K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: PARLEY_K8S_SERVICE
  value: {{ include "parley.node.fullname" . | quote }}
- name: PARLEY_K8S_PORT
  value: {{ .Values.node.grpcPort | quote }}
- name: PARLEY_REPLICAS
  value: {{ .Values.cluster.replicationFactor | quote }}
- name: PARLEY_MEMBER_GRACE
  value: {{ .Values.cluster.memberGraceSeconds | quote }}
- name: PARLEY_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: PARLEY_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
A probe from values; a `grpc` probe without a port gets the node gRPC port.
Call with (dict "probe" .Values.node.livenessProbe "port" .Values.node.grpcPort
"tls" .Values.tls.enabled "path" "/healthz").
*/}}
{{- define "parley.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if and .tls (hasKey $probe "grpc") }}
{{- /* With mTLS the kubelet, which has no client certificate, cannot speak
     gRPC to the node: the same checks over the HTTP port instead. */}}
{{- $_ := unset $probe "grpc" }}
{{- $_ := set $probe "httpGet" (dict "path" (default "/healthz" .path) "port" "metrics") }}
{{- end }}
{{- if and (hasKey $probe "grpc") (kindIs "map" $probe.grpc) }}
{{- if not (hasKey $probe.grpc "port") }}
{{- $_ := set $probe.grpc "port" (int .port) }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}
