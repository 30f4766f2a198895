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
Call with (dict "probe" .Values.node.livenessProbe "port" .Values.node.grpcPort).
*/}}
{{- define "parley.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if and (hasKey $probe "grpc") (kindIs "map" $probe.grpc) }}
{{- if not (hasKey $probe.grpc "port") }}
{{- $_ := set $probe.grpc "port" (int .port) }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}
