{{/*
Names and labels of the objects this chart renders as a standalone release. The templates that a
parent chart includes to embed the sidecar are in _sidecar.tpl and take their own context.
*/}}

{{- define "obo-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's object name prefix, at most 63 characters (the DNS label limit). When the release
name already contains the chart name, it is used alone.
*/}}
{{- define "obo-sidecar.fullname" -}}
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

{{- define "obo-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "obo-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "obo-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "obo-sidecar.labels" -}}
helm.sh/chart: {{ include "obo-sidecar.chart" . }}
{{ include "obo-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "obo-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "obo-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "obo-sidecar.agentImage" -}}
{{- $image := .Values.agent.image }}
{{- if not $image.repository }}
{{- fail "agent.image.repository is required: set it to the agent's container image, e.g. --set agent.image.repository=registry.example.com/team/agent" }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else if $image.tag }}
{{- printf "%s:%s" $image.repository $image.tag }}
{{- else }}
{{- $image.repository }}
{{- end }}
{{- end }}
