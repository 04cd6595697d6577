{{- define "sfn-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sfn-worker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "sfn-worker.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "sfn-worker.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sfn-worker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sfn-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sfn-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sfn-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sfn-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sfn-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sfn-worker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The worker's settings with what the chart decides itself: the metrics
address must listen on the pod IP for probes and scraping.
*/}}
{{- define "sfn-worker.workerConfig" -}}
{{- $worker := deepCopy (default dict .Values.config.worker) }}
{{- $_ := set $worker "metrics_addr" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- $worker | toJson }}
{{- end }}

{{/*
Seconds the pod needs to shut down: the worker's grace, its cancel grace,
and the 65 s an open GetActivityTask can take to return.
*/}}
{{- define "sfn-worker.terminationGracePeriodSeconds" -}}
{{- $w := default dict .Values.config.worker }}
{{- $grace := int (default 30 $w.shutdown_grace_secs) }}
{{- $cancel := int (default 5 $w.cancel_grace_secs) }}
{{- add $grace $cancel 65 (int .Values.terminationGraceExtraSeconds) }}
{{- end }}

{{/*
One TOML value. Helm reads values through JSON, so every number arrives as
a float: integral ones are written as integers (the worker's integer fields
refuse 64.0). Strings use JSON escapes, which TOML basic strings accept.
*/}}
{{- define "sfn-worker.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ ternary "true" "false" $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}{{ if eq (floor $v) $v }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) }}{{ $v }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "sfn-worker.tomlValue" $e }}{{ end }}]
{{- else if kindIs "map" $v }}{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ toJson $k }} = {{ include "sfn-worker.tomlValue" (index $v $k) }}{{ end }} }
{{- else }}{{ fail (printf "config: cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* A table's scalar and nested fields, one `key = value` per line. */}}
{{- define "sfn-worker.tomlTable" -}}
{{- range $k := keys . | sortAlpha }}
{{ $k }} = {{ include "sfn-worker.tomlValue" (index $ $k) }}
{{- end }}
{{- end }}

{{/* The whole configuration file. */}}
{{- define "sfn-worker.configToml" -}}
# Rendered by the sfn-worker chart from .Values.config.
{{- with .Values.config.aws }}

[aws]
{{- include "sfn-worker.tomlTable" . }}
{{- end }}

[worker]
{{- include "sfn-worker.tomlTable" (include "sfn-worker.workerConfig" . | fromJson) }}
{{- range .Values.config.activity }}

[[activity]]
{{- include "sfn-worker.tomlTable" . }}
{{- end }}
{{- range .Values.config.queue }}

[[queue]]
{{- include "sfn-worker.tomlTable" . }}
{{- end }}
{{- end }}

{{/*
The KEDA saturation trigger's query: the release's pods' saturation, summed.
Deployment pods are named <fullname>-<replicaset hash>-<suffix> (a long name
is cut before the suffix: <fullname>-<part of the hash><suffix>), so this
pattern takes no pod of another release whose name merely starts the same.
*/}}
{{- define "sfn-worker.saturationQuery" -}}
{{- with .Values.keda.saturation.query }}
{{- . }}
{{- else }}
{{- printf "sum(sfn_worker_saturation{namespace=%q, pod=~%q})" .Release.Namespace (printf "%s-[a-z0-9]+(-[a-z0-9]+)?" (include "sfn-worker.fullname" .)) }}
{{- end }}
{{- end }}
