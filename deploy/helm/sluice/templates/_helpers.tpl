{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "sluice.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sluice.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sluice.secretName" -}}
{{- default (include "sluice.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Budgets and limits are exact across replicas only with one store and shared counters. */}}
{{- define "sluice.validate" -}}
{{- $several := or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}
{{- if and $several (ne .Values.counters.backend "redis") -}}
{{- fail "several replicas (replicaCount > 1 or autoscaling) need counters.backend: redis, or limits are not shared" -}}
{{- end -}}
{{- if and $several (not .Values.existingSecret) (hasPrefix "sqlite" .Values.store.url) -}}
{{- fail "several replicas need a shared store: set store.url to PostgreSQL" -}}
{{- end -}}
{{- if not .Values.existingSecret -}}
{{- if not .Values.audit.hmacKey -}}
{{- fail "audit.hmacKey is required (or existingSecret): the gateway keeps a sealed audit log" -}}
{{- end -}}
{{- if not .Values.store.url -}}
{{- fail "store.url is required (or existingSecret): postgresql+asyncpg://user:password@host:5432/sluice" -}}
{{- end -}}
{{- if and (eq .Values.counters.backend "redis") (not .Values.counters.redisUrl) -}}
{{- fail "counters.redisUrl is required when counters.backend is redis (or existingSecret)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
