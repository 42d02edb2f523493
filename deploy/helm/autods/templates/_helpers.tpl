{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "autods.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified release name; the release name alone when it already contains the
chart name.
*/}}
{{- define "autods.fullname" -}}
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

{{- define "autods.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "autods.selectorLabels" -}}
app.kubernetes.io/name: {{ include "autods.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "autods.labels" -}}
helm.sh/chart: {{ include "autods.chart" . }}
{{ include "autods.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: autods
{{- end }}

{{- define "autods.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "autods.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "autods.configMapName" -}}
{{- printf "%s-config" (include "autods.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the Secret the workers read, or "" when there is none.
*/}}
{{- define "autods.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else if .Values.secret.env }}
{{- printf "%s-secret" (include "autods.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Image reference for a worker: (dict "root" $ "kind" "cpu"|"gpu").
*/}}
{{- define "autods.image" -}}
{{- $image := index .root.Values.image .kind -}}
{{- if not $image }}
{{- fail (printf "image.%s is not defined" .kind) }}
{{- end }}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/*
An emptyDir source as inline JSON, limited to the given size when one is set.
*/}}
{{- define "autods.emptyDir" -}}
{{- if . }}{{ dict "sizeLimit" . | toJson }}{{ else }}{}{{ end }}
{{- end }}

{{/*
Name of a component's objects: (dict "root" $ "name" "api").
*/}}
{{- define "autods.componentName" -}}
{{- printf "%s-%s" (include "autods.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of a worker class's Deployment (and of its ScaledObject or HPA): (dict "root" $ "class" "gpu").
*/}}
{{- define "autods.workerName" -}}
{{- printf "%s-worker-%s" (include "autods.fullname" .root) .class | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The AUTODS_* settings of every process, as a YAML map of strings: the data of the
ConfigMap, and of the migration Job's hook ConfigMap (hooks run before the release's
ConfigMap exists).
*/}}
{{- define "autods.configData" -}}
{{- include "autods.validate" . -}}
AUTODS_DATABASE_URL: {{ required "database.url is required" .Values.database.url | quote }}
AUTODS_BROKER_URL: {{ required "broker.url is required" .Values.broker.url | quote }}
AUTODS_BROKER_RESULT_BACKEND: {{ required "broker.resultBackend is required" .Values.broker.resultBackend | quote }}
AUTODS_BROKER_KEY_PREFIX: {{ .Values.broker.keyPrefix | default "" | toString | quote }}
{{- with .Values.broker.visibilityTimeoutSeconds }}
AUTODS_BROKER_VISIBILITY_TIMEOUT_S: {{ int . | toString | quote }}
{{- end }}
AUTODS_PIPELINE_STALL_TIMEOUT_S: {{ .Values.pipeline.stallTimeoutSeconds | int | toString | quote }}
AUTODS_PIPELINE_STALL_CHECK_INTERVAL_S: {{ .Values.pipeline.stallCheckIntervalSeconds | int | toString | quote }}
AUTODS_STORAGE_URL: {{ required "storage.url is required" .Values.storage.url | quote }}
{{- with .Values.storage.endpointUrl }}
AUTODS_STORAGE_ENDPOINT_URL: {{ . | quote }}
{{- end }}
AUTODS_STORAGE_REGION: {{ .Values.storage.region | quote }}
AUTODS_CLIP_MODEL: {{ .Values.clip.model | quote }}
AUTODS_CLIP_PRETRAINED: {{ .Values.clip.pretrained | quote }}
{{- if .Values.metrics.enabled }}
AUTODS_METRICS_DIR: "/tmp/autods-metrics"
AUTODS_METRICS_PORT: {{ .Values.metrics.port | int | toString | quote }}
{{- end }}
AUTODS_LOG_JSON: {{ ternary "1" "0" (.Values.logs.json | default false) | quote }}
{{- range $key, $value := .Values.extraEnv }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Checks of values that span several templates; renders nothing.
*/}}
{{- define "autods.validate" -}}
{{- $prefixKey := "AUTODS_BROKER_KEY_PREFIX" }}
{{- if hasKey (.Values.extraEnv | default dict) $prefixKey }}
{{- fail "extraEnv.AUTODS_BROKER_KEY_PREFIX is not allowed: set broker.keyPrefix, which the KEDA triggers use too" }}
{{- end }}
{{- if hasKey (.Values.secret.env | default dict) $prefixKey }}
{{- fail "secret.env.AUTODS_BROKER_KEY_PREFIX is not allowed: set broker.keyPrefix, which the KEDA triggers use too" }}
{{- end }}
{{- $visibility := .Values.broker.visibilityTimeoutSeconds | default 0 | int }}
{{- $stall := .Values.pipeline.stallTimeoutSeconds | default 0 | int }}
{{- range $class, $worker := .Values.workers }}
{{- if and $visibility $worker.enabled (ge (int ($worker.terminationGracePeriodSeconds | default 120)) $visibility) }}
{{- fail (printf "workers.%s.terminationGracePeriodSeconds (%d) must be below broker.visibilityTimeoutSeconds (%d), or a chunk still running would be redelivered" $class (int $worker.terminationGracePeriodSeconds) $visibility) }}
{{- end }}
{{- if and $stall $worker.enabled (ge (int ($worker.terminationGracePeriodSeconds | default 120)) $stall) }}
{{- fail (printf "workers.%s.terminationGracePeriodSeconds (%d) must be below pipeline.stallTimeoutSeconds (%d), or the watchdog would send a running chunk again" $class (int $worker.terminationGracePeriodSeconds) $stall) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $class) }}
{{- fail (printf "workers.%s: a class name must be a lowercase DNS label (it names the Deployment and the Celery node)" $class) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by every pod of the chart (after `spec:`).
*/}}
{{- define "autods.podCommon" -}}
serviceAccountName: {{ include "autods.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The scratch volumes mounted at /tmp and /home/autods (the root filesystem is read-only).
*/}}
{{- define "autods.scratchVolumes" -}}
- name: tmp
  emptyDir: {{ include "autods.emptyDir" .Values.scratch.tmpSizeLimit }}
- name: home
  emptyDir: {{ include "autods.emptyDir" .Values.scratch.homeSizeLimit }}
{{- end }}

{{- define "autods.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/autods
{{- end }}

{{/*
envFrom of every autods process: the ConfigMap, then the credentials Secret (it wins).
*/}}
{{- define "autods.envFrom" -}}
- configMapRef:
    name: {{ include "autods.configMapName" . }}
{{- with include "autods.secretName" . }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{/*
Where the API token comes from, as JSON {"name", "key", "create", "value", "insecure"};
fails when the API is enabled without one.
*/}}
{{- define "autods.apiToken" -}}
{{- $t := .Values.api.token | default dict }}
{{- $key := $t.key | default "token" }}
{{- if $t.existingSecret }}
{{- dict "name" $t.existingSecret "key" $key "create" false | toJson }}
{{- else if $t.value }}
{{- dict "name" (include "autods.componentName" (dict "root" . "name" "api")) "key" $key "create" true "value" ($t.value | toString) | toJson }}
{{- else if .Values.api.insecureLocalDev }}
{{- dict "name" (include "autods.componentName" (dict "root" . "name" "api")) "key" $key "create" true "value" "autods-local-dev-token" "insecure" true | toJson }}
{{- else }}
{{- fail "api.enabled is true but no API token is configured: set api.token.existingSecret (a Secret with the token under api.token.key) or api.token.value; only for a throwaway local cluster, set api.insecureLocalDev=true" }}
{{- end }}
{{- end }}

{{/*
Where Flower's basic auth comes from, like autods.apiToken.
*/}}
{{- define "autods.flowerAuth" -}}
{{- $a := .Values.flower.basicAuth | default dict }}
{{- $key := $a.key | default "basic-auth" }}
{{- if $a.existingSecret }}
{{- dict "name" $a.existingSecret "key" $key "create" false | toJson }}
{{- else if $a.value }}
{{- range splitList "," ($a.value | toString) }}
{{- if not (regexMatch "^[^:]+:.+$" .) }}
{{- fail "flower.basicAuth.value must be user:password (comma-separated for several users)" }}
{{- end }}
{{- end }}
{{- dict "name" (include "autods.componentName" (dict "root" . "name" "flower")) "key" $key "create" true "value" ($a.value | toString) | toJson }}
{{- else if .Values.flower.insecureLocalDev }}
{{- dict "name" (include "autods.componentName" (dict "root" . "name" "flower")) "key" $key "create" true "value" "admin:autods-local-dev" "insecure" true | toJson }}
{{- else }}
{{- fail "flower.enabled is true but no basic auth is configured: set flower.basicAuth.existingSecret (a Secret with user:password under flower.basicAuth.key) or flower.basicAuth.value; only for a throwaway local cluster, set flower.insecureLocalDev=true" }}
{{- end }}
{{- end }}

{{/*
How a worker class is scaled: "keda", "hpa" or "" (fixed replicas): (dict "root" $ "worker" $worker).
*/}}
{{- define "autods.scalingMode" -}}
{{- $as := .worker.autoscaling | default dict }}
{{- $on := true }}
{{- if hasKey $as "enabled" }}{{ $on = $as.enabled }}{{ end }}
{{- if $on }}
{{- if .root.Values.autoscaling.keda.enabled }}keda
{{- else if .root.Values.autoscaling.hpa.enabled }}hpa
{{- end }}
{{- end }}
{{- end }}

{{/*
The broker's Redis as KEDA sees it, as JSON {"address", "databaseIndex", "enableTLS"}:
explicit autoscaling.keda.redis values, else parsed from broker.url.
*/}}
{{- define "autods.kedaRedis" -}}
{{- $r := .Values.autoscaling.keda.redis }}
{{- $url := urlParse (required "broker.url is required" .Values.broker.url) }}
{{- $isRedis := has $url.scheme (list "redis" "rediss") }}
{{- $address := $r.address | default "" }}
{{- if not $address }}
{{- if not (and $isRedis $url.host) }}
{{- fail (printf "autoscaling.keda.redis.address is required: broker.url (scheme %q) names no Redis host" $url.scheme) }}
{{- end }}
{{- $address = $url.host }}
{{- if not (regexMatch ":[0-9]+$" $address) }}
{{- $address = printf "%s:6379" $address }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[^/:]+:[0-9]+$" $address) }}
{{- fail (printf "autoscaling.keda.redis.address must be host:port, got %q" $address) }}
{{- end }}
{{- $db := "" }}
{{- if kindIs "invalid" $r.databaseIndex }}
{{- $path := trimPrefix "/" ($url.path | default "") }}
{{- if and $isRedis $path }}
{{- if not (regexMatch "^[0-9]+$" $path) }}
{{- fail (printf "cannot read a Redis database index from broker.url (path %q): set autoscaling.keda.redis.databaseIndex" $url.path) }}
{{- end }}
{{- $db = $path }}
{{- else }}
{{- $db = "0" }}
{{- end }}
{{- else }}
{{- $db = $r.databaseIndex | toString }}
{{- if not (regexMatch "^[0-9]+$" $db) }}
{{- fail (printf "autoscaling.keda.redis.databaseIndex must be a non-negative integer, got %q" $db) }}
{{- end }}
{{- end }}
{{- $tls := eq $url.scheme "rediss" }}
{{- if not (kindIs "invalid" $r.enableTLS) }}
{{- $tls = $r.enableTLS }}
{{- end }}
{{- dict "address" $address "databaseIndex" $db "enableTLS" (ternary "true" "false" $tls) | toJson }}
{{- end }}
