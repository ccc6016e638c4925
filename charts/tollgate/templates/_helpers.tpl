{{/* Names and labels shared by every object. */}}
{{- define "tollgate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tollgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The release's pods: Tollgate itself and, for trials, its Redis. */}}
{{- define "tollgate.releaseLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Tollgate's own pods, never the in-chart Redis. */}}
{{- define "tollgate.selectorLabels" -}}
{{ include "tollgate.releaseLabels" . }}
app.kubernetes.io/component: proxy
{{- end }}

{{- define "tollgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tollgate.releaseLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tollgate.secretName" -}}
{{- default (include "tollgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The store URL written into the config: a literal URL, the in-chart Redis, or a reference to the Secret. */}}
{{- define "tollgate.redisUrl" -}}
{{- if .Values.redis.internal.enabled }}
{{- printf "redis://%s-redis:6379" (include "tollgate.fullname" .) }}
{{- else if .Values.redis.url }}
{{- .Values.redis.url }}
{{- else }}
{{- "${TOLLGATE_REDIS_URL}" }}
{{- end }}
{{- end }}

{{/* The ports Tollgate reaches Redis on, for the NetworkPolicy: the in-chart Redis, the port
of a literal redis.url, each redis.nodes entry, and redis.ports; 6379 when none names one. One
port a line. */}}
{{- define "tollgate.redisPorts" -}}
{{- $ports := list }}
{{- if .Values.redis.internal.enabled }}
{{- $ports = append $ports "6379" }}
{{- else if .Values.redis.url }}
{{- $host := (urlParse .Values.redis.url).host }}
{{- if regexMatch ":[0-9]+$" $host }}
{{- $ports = append $ports (regexFind "[0-9]+$" $host) }}
{{- else }}
{{- $ports = append $ports "6379" }}
{{- end }}
{{- end }}
{{- range .Values.redis.nodes }}
{{- $ports = append $ports (regexFind "[0-9]+$" .) }}
{{- end }}
{{- range .Values.redis.ports }}
{{- $ports = append $ports (toString .) }}
{{- end }}
{{- if not $ports }}
{{- $ports = append $ports "6379" }}
{{- end }}
{{- range (uniq $ports) }}
{{ . }}
{{- end }}
{{- end }}

{{- define "tollgate.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else if .Values.ingress.enabled }}
{{- printf "https://%s" .Values.ingress.host }}
{{- else }}
{{- printf "http://127.0.0.1:%v" .Values.ports.public }}
{{- end }}
{{- end }}

{{/* Alert and dashboard selectors: this release's scrape job. */}}
{{- define "tollgate.job" -}}
{{- printf "%s" (include "tollgate.fullname" .) }}
{{- end }}
