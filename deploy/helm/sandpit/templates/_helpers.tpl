{{- define "sandpit.fullname" -}}
{{- printf "%s-sandpit" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sandpit.labels" -}}
app.kubernetes.io/name: sandpit
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The server pods: the only ingress a sandbox's NetworkPolicy admits. */}}
{{- define "sandpit.serverSelector" -}}
app.kubernetes.io/name: sandpit
app.kubernetes.io/component: server
{{- end -}}

{{- define "sandpit.databaseSecret" -}}
{{- default (printf "%s-database" (include "sandpit.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "sandpit.sharedSecret" -}}
{{- default (printf "%s-shared" (include "sandpit.fullname" .)) .Values.sharedSecret.existingSecret -}}
{{- end -}}

{{- define "sandpit.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
