{{/*
The chart's name.
*/}}
{{- define "fleet-telemetry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the StatefulSet's, and so its pods' prefix. At most 52 characters, so
that a pod's name stays a valid MQTT client id for the ingest (FLEET_INGEST_CLIENT_ID, at most
64) and the StatefulSet's controller-revision-hash label fits in 63.
*/}}
{{- define "fleet-telemetry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fleet-telemetry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleet-telemetry.labels" -}}
helm.sh/chart: {{ include "fleet-telemetry.chart" . }}
{{ include "fleet-telemetry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "fleet-telemetry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleet-telemetry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fleet-telemetry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fleet-telemetry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fleet-telemetry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
"true" when the telemetry goes to ClickHouse, else "" (SQLite in the data volume).
*/}}
{{- define "fleet-telemetry.clickhouse" -}}
{{- if or .Values.clickhouse.url .Values.clickhouse.existingSecret }}true{{ end }}
{{- end }}

{{/*
Refuses values the service would refuse at start, or that would lose data, with a message
naming the values to set. values.schema.json checks the same where a schema can; these also
hold when the schema is skipped (--skip-schema-validation) and say more.
*/}}
{{- define "fleet-telemetry.validate" -}}
{{- $v := .Values }}
{{- $external := $v.broker.external }}
{{- if and $external.url (not (hasPrefix "mqtts://" $external.url)) }}
{{- fail (printf "broker.external.url `%s` is not an mqtts:// URL: bikes and the ingest always use TLS (mqtts://host:8883)" $external.url) }}
{{- end }}
{{- if and $external.tls.existingSecret (not $external.url) }}
{{- fail "broker.external.tls is for an external broker: set broker.external.url too" }}
{{- end }}
{{- if and $v.clickhouse.url $v.clickhouse.existingSecret }}
{{- fail "clickhouse: set url or existingSecret, not both" }}
{{- end }}
{{- if gt (int $v.replicaCount) 1 }}
{{- $why := printf "replicaCount is %d, but" (int $v.replicaCount) }}
{{- if not (include "fleet-telemetry.clickhouse" .) }}
{{- fail (printf "%s the SQLite telemetry store belongs to one process: set clickhouse.url or clickhouse.existingSecret" $why) }}
{{- end }}
{{- if not $v.postgresql.existingSecret }}
{{- fail (printf "%s the SQLite registry belongs to one process: set postgresql.existingSecret" $why) }}
{{- end }}
{{- if not $external.url }}
{{- fail (printf "%s the embedded broker belongs to one process and the replicas must share one subscription: set broker.external.url" $why) }}
{{- end }}
{{- if not $v.masterKeys.existingSecret }}
{{- fail (printf "%s every replica must open the same CA: set masterKeys.existingSecret" $why) }}
{{- end }}
{{- end }}
{{- if and (not $v.persistence.enabled) $v.postgresql.existingSecret (not $v.masterKeys.existingSecret) }}
{{- fail "persistence.enabled is false: the generated master key would be lost with the pod while PostgreSQL keeps the CA sealed under it; set masterKeys.existingSecret" }}
{{- end }}
{{- end }}
