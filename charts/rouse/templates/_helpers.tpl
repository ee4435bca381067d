{{/*
Names and labels used by every template. All helpers are prefixed `rouse.`.
*/}}

{{/* The chart name, overridable. */}}
{{- define "rouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release-qualified name used as a prefix. Truncated to 50 characters so that
suffixes such as "-parking" keep names within the 63-character DNS label limit.
*/}}
{{- define "rouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, as the helm.sh/chart label wants it. */}}
{{- define "rouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "rouse.labels" -}}
helm.sh/chart: {{ include "rouse.chart" . }}
app.kubernetes.io/name: {{ include "rouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rouse
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (operator, parking, redis). Usage: include "rouse.selectorLabels" (dict "ctx" $ "component" "operator") */}}
{{- define "rouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rouse.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Full labels of one component. */}}
{{- define "rouse.componentLabels" -}}
{{ include "rouse.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "rouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Component object names. */}}
{{- define "rouse.operatorName" -}}{{ include "rouse.fullname" . }}-operator{{- end }}
{{- define "rouse.parkingName" -}}{{ include "rouse.fullname" . }}-parking{{- end }}
{{- define "rouse.redisName" -}}{{ include "rouse.fullname" . }}-redis{{- end }}
{{- define "rouse.configName" -}}{{ include "rouse.fullname" . }}-config{{- end }}

{{/* An image reference: repository@digest, or repository:tag (tag defaults to appVersion). Usage: include "rouse.image" (dict "ctx" $ "image" .Values.operator.image) */}}
{{- define "rouse.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The chart's Redis holds the state: no settings.stateUrl nor stateStore.existingSecret. */}}
{{- define "rouse.ownRedis" -}}
{{- if and .Values.redis.enabled (not .Values.stateStore.existingSecret) (not .Values.settings.stateUrl) }}true{{ end }}
{{- end }}

{{/* The Secret holding the state store URL: stateStore.existingSecret, else the chart's Redis
Secret (its generated password inside the URL); empty when settings.stateUrl is a plain URL. */}}
{{- define "rouse.stateSecret" -}}
{{- if .Values.stateStore.existingSecret }}{{ .Values.stateStore.existingSecret }}
{{- else if include "rouse.ownRedis" . }}{{ include "rouse.redisName" . }}
{{- end }}
{{- end }}

{{/* The key of the URL in that Secret. */}}
{{- define "rouse.stateSecretKey" -}}
{{- if .Values.stateStore.existingSecret }}{{ .Values.stateStore.secretKey }}{{ else }}url{{ end }}
{{- end }}

{{/* The key of the skills' URL in that Secret: the chart's Redis gives skills a user of their
own (`skill`, redis.yaml), an existing Secret one URL for everyone. */}}
{{- define "rouse.skillStateSecretKey" -}}
{{- if .Values.stateStore.existingSecret }}{{ .Values.stateStore.secretKey }}{{ else }}skill-url{{ end }}
{{- end }}

{{/* The plain state store URL kept in the ConfigMap: settings.stateUrl (never with a password:
it would sit in the ConfigMap and in every skill's Service); empty when a Secret holds it. */}}
{{- define "rouse.stateUrl" -}}
{{- if include "rouse.stateSecret" . }}
{{- else if .Values.settings.stateUrl }}
{{- if regexMatch "^[a-z]+://[^/@]*:[^/@]*@" .Values.settings.stateUrl }}
{{- fail "rouse: settings.stateUrl carries a password: put the URL in a Secret and set stateStore.existingSecret (and stateStore.secretKey) instead" }}
{{- end }}
{{- .Values.settings.stateUrl }}
{{- else }}
{{- fail "rouse: no state store: set settings.stateUrl (redis://host:port/db), stateStore.existingSecret, or enable redis.enabled" }}
{{- end }}
{{- end }}

{{/* ROUSE_STATE_URL from the state Secret, for the operator and parking containers' env. */}}
{{- define "rouse.stateUrlFromSecret" -}}
{{- with include "rouse.stateSecret" . -}}
- name: ROUSE_STATE_URL
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ include "rouse.stateSecretKey" $ | quote }}
{{- end }}
{{- end }}

{{/* The parking service's token Secret (drop and replay need it). */}}
{{- define "rouse.parkingTokenName" -}}{{ include "rouse.fullname" . }}-parking-token{{- end }}

{{/* ROUSE_PARKING_TOKEN from that Secret, for the parking and operator containers' env. */}}
{{- define "rouse.parkingTokenEnv" -}}
- name: ROUSE_PARKING_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "rouse.parkingTokenName" . | quote }}
      key: token
{{- end }}

{{/* The parking service base URL: settings.parkingUrl, else the chart's parking Service. */}}
{{- define "rouse.parkingUrl" -}}
{{- if .Values.settings.parkingUrl }}
{{- .Values.settings.parkingUrl | trimSuffix "/" }}
{{- else if .Values.parking.enabled }}
{{- $svc := printf "http://%s.%s.svc.cluster.local" (include "rouse.parkingName" .) .Release.Namespace }}
{{- if eq (int .Values.parking.service.port) 80 }}
{{- $svc }}
{{- else }}
{{- printf "%s:%d" $svc (int .Values.parking.service.port) }}
{{- end }}
{{- else }}
{{- fail "rouse: no parking service: set settings.parkingUrl or enable parking.enabled" }}
{{- end }}
{{- end }}

