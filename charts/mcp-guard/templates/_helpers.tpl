{{/* The base name of every object: the release name, plus "-mcp-guard" unless it already says so. */}}
{{- define "mcp-guard.fullname" -}}
{{- if contains "mcp-guard" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-mcp-guard" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-guard.labels" -}}
app.kubernetes.io/name: mcp-guard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mcp-guard.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "mcp-guard.operatorSelector" -}}
app.kubernetes.io/name: mcp-guard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "mcp-guard.agentSelector" -}}
app.kubernetes.io/name: mcp-guard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "mcp-guard.proxyImage" -}}
{{- default (printf "%s/mcp-guard-proxy:%s" .Values.image.registry (include "mcp-guard.tag" .)) .Values.proxy.image -}}
{{- end -}}

{{/* The API server address, when the values override the in-cluster one (client libraries read these). */}}
{{- define "mcp-guard.apiServerEnv" -}}
{{- if .Values.apiServer.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.apiServer.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ required "apiServer.port is required with apiServer.host" .Values.apiServer.port | toString | quote }}
{{- end }}
{{- end -}}

{{/* The pod security context every mcp-guard container without kernel duties runs with. */}}
{{- define "mcp-guard.restricted" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Namespaces the pod webhook is never called for. */}}
{{- define "mcp-guard.namespaceSelector" -}}
matchExpressions:
  - key: mcpguard.io/injection
    operator: NotIn
    values: [disabled]
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      - {{ .Release.Namespace }}
      {{- range .Values.webhook.excludedNamespaces }}
      - {{ . }}
      {{- end }}
{{- end -}}
