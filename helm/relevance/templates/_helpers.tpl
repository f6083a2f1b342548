{{/* Names, labels and the wiring between components. */}}

{{- define "relevance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or the release name when it already contains the chart name; 45 characters at most so
that component suffixes (-gateway, -triton, -redis, -vllm) stay within 63. */}}
{{- define "relevance.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "relevance.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "relevance.labels" -}}
helm.sh/chart: {{ include "relevance.chart" .ctx }}
{{ include "relevance.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: relevance
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "relevance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relevance.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "relevance.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "relevance.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "relevance.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* "external" (redis.external.url or its Secret), "internal" (the chart's Redis) or "none" (local store). */}}
{{- define "relevance.redisMode" -}}
{{- if or .Values.redis.external.existingSecret .Values.redis.external.url -}}
external
{{- else if .Values.redis.enabled -}}
internal
{{- else -}}
none
{{- end -}}
{{- end -}}

{{/* The teacher's base URL: the chart's vLLM when enabled, else teacher.externalUrl (may be empty). */}}
{{- define "relevance.teacherUrl" -}}
{{- if .Values.vllm.enabled -}}
{{- printf "http://%s-vllm:%v/v1" (include "relevance.fullname" .) .Values.vllm.port -}}
{{- else -}}
{{- .Values.teacher.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* Triton's host:port for the gateway's client protocol. */}}
{{- define "relevance.tritonUrl" -}}
{{- $port := ternary .Values.triton.ports.grpc .Values.triton.ports.http (eq .Values.triton.protocol "grpc") -}}
{{- printf "%s-triton:%v" (include "relevance.fullname" .) $port -}}
{{- end -}}

{{/* The model repository volume (a claim), when one is configured. */}}
{{- define "relevance.modelRepositoryVolume" -}}
- name: model-repository
  persistentVolumeClaim:
    claimName: {{ .Values.modelRepository.existingClaim }}
    readOnly: true
{{- end -}}

{{- define "relevance.modelRepositoryMount" -}}
- name: model-repository
  mountPath: {{ .Values.modelRepository.mountPath }}
  readOnly: true
  {{- with .Values.modelRepository.subPath }}
  subPath: {{ . }}
  {{- end }}
{{- end -}}

{{/* An environment variable's value from a values entry: lists and maps as JSON, whole numbers without an
exponent (YAML numbers arrive as float64, which would print 4194304 as 4.194304e+06), the rest as text. */}}
{{- define "relevance.envValue" -}}
{{- if or (kindIs "slice" .) (kindIs "map" .) -}}
{{- toJson . -}}
{{- else if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
