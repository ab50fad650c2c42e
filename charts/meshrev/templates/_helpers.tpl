{{/*
Names are fixed by meshrev's contract (the CLI, the manager's defaults and the
docs refer to them), so the chart does not derive them from the release name.
One release per cluster: the Mesh, the webhook configurations and the
ClusterRole are cluster-scoped.
*/}}

{{/* meshrev.labels are the common labels of every object. */}}
{{- define "meshrev.labels" -}}
app.kubernetes.io/name: meshrev
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* meshrev.selectorLabels select the manager pods; immutable once installed. */}}
{{- define "meshrev.selectorLabels" -}}
app.kubernetes.io/name: meshrev
app.kubernetes.io/component: manager
{{- end }}

{{/* meshrev.image is the manager image reference. */}}
{{- define "meshrev.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
meshrev.revisionName is the revision name of a version, by convention the
version with dots replaced by dashes (1.22.6 -> 1-22-6), as revisions.RevisionName.
*/}}
{{- define "meshrev.revisionName" -}}
{{ replace "." "-" . }}
{{- end }}

{{/*
meshrev.helmControlPlanes is "true" when the manager gets the RBAC of helm
control planes: asked for, or the initial revision is one.
*/}}
{{- define "meshrev.helmControlPlanes" -}}
{{- if or .Values.controlPlanes.helm.enabled (and .Values.mesh.controlPlane.enabled .Values.mesh.controlPlane.helm.repository) }}true{{ end }}
{{- end }}

{{/* meshrev.selfManagedCerts is "true" when the manager manages its own certificates. */}}
{{- define "meshrev.selfManagedCerts" -}}
{{- if not .Values.certManager.enabled }}true{{ end }}
{{- end }}

{{/*
meshrev.clientConfig is a webhook's clientConfig for a path: the Service, or
webhook.url + path for a manager outside the cluster. caBundle is left out on
purpose: the manager (self-managed certificates) or cert-manager's cainjector
writes it, and because the chart never sets it, Helm's three-way merge leaves
the live value alone on upgrade.
*/}}
{{- define "meshrev.clientConfig" -}}
{{- if .root.Values.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" .root.Values.webhook.url) .path | quote }}
{{- else }}
service:
  name: meshrev-webhook
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path | quote }}
  port: 443
{{- end }}
{{- end }}

{{/* meshrev.webhookAnnotations ask cert-manager's cainjector for caBundle. */}}
{{- define "meshrev.webhookAnnotations" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/meshrev-webhook
{{- end }}
{{- end }}

{{/*
meshrev.excludedNamespaces are never sent to the revision router: row 1 of the
decision table (revisions.SystemNamespaces and meshrev's own namespace).
*/}}
{{- define "meshrev.excludedNamespaces" -}}
- kube-system
- kube-public
- kube-node-lease
- {{ .Release.Namespace }}
{{- end }}
