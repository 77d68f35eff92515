{{/*
Handoff chart helpers.

The named templates that another chart may include take a dict, not the root context, so they work
with any values layout:

  root    the caller's root context ($), for .Release, .Chart and tpl
  values  the Handoff values (this chart's values.yaml shape); in a parent chart that lists this
          chart as a dependency named "handoff", that is .Values.handoff (defaults merged in)
  name    optional base name; the ConfigMap is "<name>-config". Default: "<release>-handoff".

  handoff.sidecar          one list item for spec.template.spec.initContainers (native sidecar)
  handoff.volumes          one list item for spec.template.spec.volumes (the config ConfigMap)
  handoff.configMap        a whole ConfigMap manifest holding handoff.yaml
  handoff.config           the handoff.yaml text itself
  handoff.terminationGracePeriodSeconds   the pod's grace period (drain + flush + margin), checked
  handoff.podAnnotations   prometheus scrape annotations and the optional config checksum (YAML map)
*/}}

{{- define "handoff.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "handoff.fullname" -}}
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

{{- define "handoff.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "handoff.selectorLabels" -}}
app.kubernetes.io/name: {{ include "handoff.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "handoff.labels" -}}
helm.sh/chart: {{ include "handoff.chart" . }}
{{ include "handoff.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The base name used by the includable templates. */}}
{{- define "handoff.baseName" -}}
{{- if .name }}
{{- .name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-handoff" .root.Release.Name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "handoff.configMapName" -}}
{{- printf "%s-config" (include "handoff.baseName" .) }}
{{- end }}

{{- define "handoff.image" -}}
{{- $v := .values }}
{{- printf "%s:%s" $v.image.repository (default .root.Chart.AppVersion $v.image.tag) }}
{{- end }}

{{/*
handoff.config: the Handoff config file (handoff.yaml) built from values. Chart-owned keys (ports,
admin, flush timeout) come from their chart values so the probes, Service and grace period agree
with the file; routes and subscriptions are passed through as written.
*/}}
{{- define "handoff.config" -}}
{{- $v := .values -}}
{{- include "handoff.checkProfile" . -}}
{{- $listen := merge (dict "address" "0.0.0.0" "port" (int $v.ports.http)) (deepCopy (default (dict) $v.listen)) -}}
{{- $kafka := dict "brokers" $v.kafka.brokers "flush_timeout" (printf "%ds" (int $v.kafka.flushTimeoutSeconds)) -}}
{{- if $v.kafka.allowInsecure }}{{ $_ := set $kafka "allow_insecure" true }}{{ end -}}
{{- if $v.kafka.properties }}{{ $_ := set $kafka "properties" $v.kafka.properties }}{{ end -}}
{{- $cfg := dict
      "profile" (default "production" $v.profile)
      "listen" $listen
      "admin" (dict "enabled" true "address" $v.admin.address "port" (int $v.ports.admin))
      "upstream" $v.upstream
      "kafka" $kafka
      "defaults" $v.defaults
      "log" $v.log -}}
# Handoff config rendered by the {{ .root.Chart.Name }} chart {{ .root.Chart.Version }}. Edit the
# chart values, not this file. Handoff reloads routes when this file changes (no restart).
{{ toYaml $cfg }}
{{- with $v.limits }}
limits:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $v.status }}
status:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $v.idempotency }}
idempotency:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $v.state }}
state:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $v.replies }}
replies:
{{ toYaml . | indent 2 }}
{{- end }}
{{- if $v.drain.writeToConfig }}
drain:
  delay: {{ printf "%ds" (int $v.drain.delaySeconds) }}
  timeout: {{ printf "%ds" (int $v.drain.timeoutSeconds) }}
{{- end }}
{{- if $v.routes }}
routes:
{{ toYaml $v.routes }}
{{- else }}
routes: []
{{- end }}
{{- if $v.subscriptions }}
subscriptions:
{{ toYaml $v.subscriptions }}
{{- end }}
{{- end }}

{{/*
handoff.checkProfile: the production profile's Kafka rules (Handoff's own, config/README.md "Profiles")
checked at render time, so `helm install` fails instead of a pod that exits 78. Values written as
${ENV} are left to Handoff, which sees them expanded; subscriptions' properties too.
*/}}
{{- define "handoff.checkProfile" -}}
{{- $v := .values -}}
{{- if and (eq (toString (default "production" $v.profile)) "production") (not $v.kafka.allowInsecure) -}}
{{- $hint := "set kafka.properties.security.protocol: SSL (or SASL_SSL) and leave verification on; or profile: development, or kafka.allowInsecure: true" -}}
{{- if eq (trim (toString $v.kafka.brokers)) "embedded" -}}
{{- fail (printf "profile: production refuses kafka.brokers: embedded (an in-process mock cluster, not durable); %s" $hint) -}}
{{- end -}}
{{- $props := default (dict) $v.kafka.properties -}}
{{- $proto := lower (trim (toString (default "plaintext" (index $props "security.protocol")))) -}}
{{- if not (or (contains "${" $proto) (has $proto (list "ssl" "sasl_ssl"))) -}}
{{- fail (printf "profile: production refuses kafka.properties security.protocol=%s (not encrypted); %s" $proto $hint) -}}
{{- end -}}
{{- $alg := lower (trim (toString (default "https" (index $props "ssl.endpoint.identification.algorithm")))) -}}
{{- if not (or (contains "${" $alg) (eq $alg "https")) -}}
{{- fail (printf "profile: production refuses kafka.properties ssl.endpoint.identification.algorithm=%s (no broker host name check); %s" $alg $hint) -}}
{{- end -}}
{{- $verify := "true" -}}
{{- if hasKey $props "enable.ssl.certificate.verification" -}}
{{- $verify = lower (trim (toString (index $props "enable.ssl.certificate.verification"))) -}}
{{- end -}}
{{- if not (or (contains "${" $verify) (has $verify (list "true" "t" "1"))) -}}
{{- fail (printf "profile: production refuses kafka.properties enable.ssl.certificate.verification=%s (no broker certificate check); %s" $verify $hint) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "handoff.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "handoff.configMapName" . }}
  labels:
    app.kubernetes.io/component: handoff-config
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    app.kubernetes.io/managed-by: {{ .root.Release.Service }}
data:
  handoff.yaml: |
{{ include "handoff.config" . | indent 4 }}
{{- end }}

{{/* Seconds: drain delay + drain timeout + flush + margin, or the explicit value (checked). */}}
{{- define "handoff.terminationGracePeriodSeconds" -}}
{{- $v := .values }}
{{- $need := add (int $v.drain.delaySeconds) (int $v.drain.timeoutSeconds) (int $v.kafka.flushTimeoutSeconds) }}
{{- if kindIs "invalid" $v.terminationGracePeriodSeconds }}
{{- add $need (int $v.terminationGraceMarginSeconds) }}
{{- else if le (int $v.terminationGracePeriodSeconds) (int $need) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than drain.delaySeconds + drain.timeoutSeconds + kafka.flushTimeoutSeconds (%d): the kubelet would SIGKILL Handoff before it has flushed Kafka" (int $v.terminationGracePeriodSeconds) (int $need)) }}
{{- else }}
{{- int $v.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{- define "handoff.podAnnotations" -}}
{{- $v := .values }}
{{- if $v.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $v.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- if $v.restartOnConfigChange }}
checksum/handoff-config: {{ include "handoff.config" . | sha256sum }}
{{- end }}
{{- end }}

{{- define "handoff.probe" -}}
{{- $v := .values -}}
{{- if eq $v.probes.type "exec" }}
exec:
  command: ["/usr/local/bin/handoff-healthcheck", {{ .path | quote }}, {{ $v.ports.admin | quote }}]
{{- else }}
httpGet:
  path: {{ .path }}
  port: admin
{{- end }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}

{{/*
handoff.sidecar: the Handoff container as a native sidecar, one list item for initContainers.
restartPolicy: Always makes the kubelet start it (and wait for its startupProbe) before the app
containers, and stop it only after they have exited, so queued events are flushed last.
*/}}
{{- define "handoff.sidecar" -}}
{{- $v := .values -}}
{{- if and (eq $v.probes.type "httpGet") (or (hasPrefix "127." $v.admin.address) (eq $v.admin.address "::1")) -}}
{{- fail "admin.address is a loopback address: kubelet httpGet probes cannot reach it; use admin.address 0.0.0.0 or probes.type exec" -}}
{{- end -}}
- name: {{ $v.containerName }}
  image: {{ include "handoff.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  restartPolicy: Always
  command: ["/usr/local/bin/handoff"]
  args: ["run", "--config", {{ printf "%s/handoff.yaml" $v.configMountPath | quote }}]
  ports:
    - name: http
      containerPort: {{ $v.ports.http }}
      protocol: TCP
    - name: admin
      containerPort: {{ $v.ports.admin }}
      protocol: TCP
  {{- $env := list }}
  {{- range $name, $key := $v.kafka.credentials.env }}
  {{- $env = append $env (dict "name" $name "valueFrom" (dict "secretKeyRef" (dict "name" $v.kafka.credentials.secretName "key" $key))) }}
  {{- end }}
  {{- $env = concat $env (default (list) $v.env) }}
  {{- if $env }}
  env:
    {{- toYaml $env | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: handoff-config
      mountPath: {{ $v.configMountPath }}
      readOnly: true
  startupProbe:
    {{- include "handoff.probe" (dict "values" $v "path" "/healthz" "probe" $v.probes.startup) | nindent 4 }}
  livenessProbe:
    {{- include "handoff.probe" (dict "values" $v "path" "/healthz" "probe" $v.probes.liveness) | nindent 4 }}
  readinessProbe:
    {{- include "handoff.probe" (dict "values" $v "path" "/readyz" "probe" $v.probes.readiness) | nindent 4 }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
{{- end }}

{{- define "handoff.volumes" -}}
- name: handoff-config
  configMap:
    name: {{ include "handoff.configMapName" . }}
    items:
      - key: handoff.yaml
        path: handoff.yaml
{{- end }}
