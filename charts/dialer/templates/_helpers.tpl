{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "dialer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "dialer.fullname" -}}
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

{{- define "dialer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "dialer.labels" -}}
helm.sh/chart: {{ include "dialer.chart" . }}
{{ include "dialer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dialer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dialer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: call with (dict "root" $ "component" "dialer"). */}}
{{- define "dialer.componentSelectorLabels" -}}
{{ include "dialer.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "dialer.componentLabels" -}}
{{ include "dialer.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "dialer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dialer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dialer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding DATABASE_URL and the Twilio credentials. */}}
{{- define "dialer.secretName" -}}
{{- default (include "dialer.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "dialer.publicBaseUrl" -}}
{{- if .Values.config.publicBaseUrl }}
{{- .Values.config.publicBaseUrl | trimSuffix "/" }}
{{- else if and .Values.callbacks.ingress.enabled .Values.callbacks.ingress.host }}
{{- printf "https://%s" .Values.callbacks.ingress.host }}
{{- else }}
{{- fail "set config.publicBaseUrl, or enable callbacks.ingress with a host: Twilio must reach the callbacks service" }}
{{- end }}
{{- end }}

{{/*
Pod template of one role; call with (dict "root" $ "component" "dialer" "spec" .Values.dialer).
*/}}
{{- define "dialer.podTemplate" -}}
{{- $root := .root }}
{{- $spec := .spec }}
{{- $selector := fromYaml (include "dialer.componentSelectorLabels" .) -}}
metadata:
  labels:
    {{- include "dialer.componentLabels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if not $root.Values.existingSecret }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- with $spec.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "dialer.serviceAccountName" $root }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $spec.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .component }}
      image: {{ include "dialer.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        - serve
        - --role
        - {{ .component }}
        {{- range $spec.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        # On SIGTERM: unready at once, serving on for the delay (endpoints update), then drain within the rest
        # of terminationGracePeriodSeconds (5 s kept back for the process to exit).
        - name: SHUTDOWN_DELAY_SECONDS
          value: {{ $root.Values.shutdownDelaySeconds | quote }}
        - name: SHUTDOWN_GRACE_SECONDS
          value: {{ max 1 (sub (sub $spec.terminationGracePeriodSeconds $root.Values.shutdownDelaySeconds) 5) | quote }}
      envFrom:
        - configMapRef:
            name: {{ include "dialer.fullname" $root }}
        - secretRef:
            name: {{ include "dialer.secretName" $root }}
      ports:
        - name: http
          containerPort: {{ $root.Values.containerPort }}
          protocol: TCP
        {{- if eq .component "api" }}
        - name: api
          containerPort: {{ $root.Values.apiContainerPort }}
          protocol: TCP
        {{- end }}
      livenessProbe:
        httpGet:
          path: {{ $root.Values.probes.livenessPath }}
          port: http
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: {{ $root.Values.probes.readinessPath }}
          port: http
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $spec.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
  {{- with $spec.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $spec.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $spec.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $spec.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range . }}
    - {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" $selector))) | indent 6 | trim }}
    {{- end }}
  {{- end }}
{{- end }}
