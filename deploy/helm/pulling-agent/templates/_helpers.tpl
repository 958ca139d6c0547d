{{- define "pulling-agent.labels" -}}
app.kubernetes.io/name: pulling-agent
app.kubernetes.io/part-of: pulling-agent
{{- end -}}
