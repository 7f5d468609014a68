{{- define "glassbox.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "glassbox.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "glassbox.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "glassbox.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "glassbox.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rules the operator needs on namespaced objects, and nothing more. */}}
{{- define "glassbox.namespacedRules" -}}
# ExplainedModels: watch them; patch their annotations (kopf's progress) and status.
- apiGroups: ["glassbox.dev"]
  resources: ["explainedmodels"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["glassbox.dev"]
  resources: ["explainedmodels/status"]
  verbs: ["patch"]
# Children carry blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement
# admission plugin allows only to those who may update the owner's finalizers.
- apiGroups: ["glassbox.dev"]
  resources: ["explainedmodels/finalizers"]
  verbs: ["update"]
# The children: server-side apply (create and patch), prune (delete), watch status.
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices", "inferencegraphs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# PodDisruptionBudgets for children with more than one replica (policy/v1, or v1beta1 before Kubernetes 1.21).
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "create", "patch", "delete"]
# The ServingRuntime an existing InferenceService names: its protocols decide how KServe's graph calls it.
- apiGroups: ["serving.kserve.io"]
  resources: ["servingruntimes"]
  verbs: ["get"]
# Events that name an invalid field.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}


{{/* The namespaces the operator acts in, as a JSON list: those listed, or the release's. */}}
{{- define "glassbox.namespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped names carry the release's namespace: several installs side by side do not collide. */}}
{{- define "glassbox.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "glassbox.fullname" .) | trunc 253 -}}
{{- end -}}
