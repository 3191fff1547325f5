{{/* The release's base name, capped for label values and object names. */}}
{{- define "meshkeeper.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshkeeper.operatorName" -}}
{{- printf "%s-operator" (include "meshkeeper.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meshkeeper.serviceAccountName" -}}
{{- default (include "meshkeeper.operatorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The meshkeeper version the Mesh runs: mesh.version or the appVersion. */}}
{{- define "meshkeeper.meshVersion" -}}
{{- default .Chart.AppVersion .Values.mesh.version -}}
{{- end -}}

{{- define "meshkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "meshkeeper.labels" -}}
{{ include "meshkeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: meshkeeper
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "meshkeeper.operatorImage" -}}
{{- $image := .Values.images.operator -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}

{{- define "meshkeeper.proxyImage" -}}
{{- printf "%s:%s" .Values.images.proxy.repository .Values.images.proxy.tag -}}
{{- end -}}

{{/*
The Mesh's spec from mesh.*: empty strings and empty lists are left out, so
the operator's defaults apply to what is not set.
*/}}
{{- define "meshkeeper.meshSpec" -}}
{{- $m := .Values.mesh -}}
{{- $spec := dict "version" (include "meshkeeper.meshVersion" .) -}}
{{- $_ := set $spec "updateStrategy" $m.updateStrategy -}}
{{- with $m.revisionTags }}{{ $_ := set $spec "revisionTags" . }}{{ end -}}
{{- with $m.rootNamespace }}{{ $_ := set $spec "rootNamespace" . }}{{ end -}}
{{- $proxy := omit $m.proxy "image" -}}
{{- with $m.proxy.image }}{{ $_ := set $proxy "image" . }}{{ end -}}
{{- $_ := set $spec "proxy" $proxy -}}
{{- $injection := pick $m.injection "policy" "nativeSidecar" -}}
{{- with $m.injection.neverInjectSelector }}{{ $_ := set $injection "neverInjectSelector" . }}{{ end -}}
{{- with $m.injection.alwaysInjectSelector }}{{ $_ := set $injection "alwaysInjectSelector" . }}{{ end -}}
{{- $_ := set $spec "injection" $injection -}}
{{- $_ := set $spec "validation" $m.validation -}}
{{- $webhook := pick $m.webhook "replicas" "failurePolicy" "timeoutSeconds" -}}
{{- with $m.webhook.url }}{{ $_ := set $webhook "url" . }}{{ end -}}
{{- $certificate := dict -}}
{{- range $key, $value := $m.webhook.certificate }}{{ if $value }}{{ $_ := set $certificate $key $value }}{{ end }}{{ end -}}
{{- with $certificate }}{{ $_ := set $webhook "certificate" . }}{{ end -}}
{{- $_ := set $spec "webhook" $webhook -}}
{{- toYaml $spec -}}
{{- end -}}

{{/* The ConfigMap holding the Mesh from mesh.* (templates/mesh.yaml). */}}
{{- define "meshkeeper.meshValuesName" -}}
meshkeeper-mesh-values
{{- end }}
