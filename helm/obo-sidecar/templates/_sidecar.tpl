{{/*
Templates that put obo-sidecar into a pod. This chart's Deployment uses them, and so can a chart that
runs its own agent (see README.md, "Embedding the sidecar in your own chart"). Each takes a dict:
  values  values in this chart's layout (sidecar, interception, egress, routes, ...), e.g.
          .Values.oboSidecar when this chart is a dependency aliased oboSidecar
  name    object name prefix; the routes ConfigMap is "<name>-routes"
  top     the including chart's root context ($)
  labels  optional labels for the routes ConfigMap
*/}}

{{/*
The obo-sidecar release that this chart version runs when sidecar.image.tag is empty. A constant
rather than .Chart.AppVersion, because in a parent chart .Chart is the parent's.
*/}}
{{- define "obo-sidecar.appVersion" -}}0.1.0{{- end }}

{{- define "obo-sidecar.routesConfigMapName" -}}
{{- if .values.existingRoutesConfigMap }}
{{- .values.existingRoutesConfigMap }}
{{- else }}
{{- printf "%s-routes" (.name | trunc 56 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/*
Formats a sidecar setting as a flag value. Helm reads numbers from values files as float64, which
print in exponent form when large (6.7108864e+07), so whole numbers are printed as integers.
*/}}
{{- define "obo-sidecar.flagValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
Renders a YAML mapping with the pieces a pod needs for the sidecar. Use it with fromYaml:
  initContainers     the sidecar container, a native sidecar (restartPolicy: Always)
  volumes            the volumes the sidecar container and agentVolumeMounts refer to
  agentEnv           proxy variables, and CA trust variables with interception, for the agent
  agentVolumeMounts  the CA directory (read-only) with interception, else empty
  podAnnotations     prometheus.io/* annotations when metrics.podAnnotations is true
*/}}
{{- define "obo-sidecar.sidecar" -}}
{{- $v := .values }}
{{- $sidecar := $v.sidecar }}
{{- $routesDir := "/etc/obo-sidecar" }}
{{- $caDir := "/var/run/obo-sidecar/ca" }}
{{- $caSecretDir := "/etc/obo-sidecar-ca" }}
{{- $proxyUrl := printf "http://127.0.0.1:%d" (int $sidecar.ports.proxy) }}
{{- if eq (int $sidecar.ports.proxy) (int $sidecar.ports.admin) }}
{{- fail (printf "sidecar.ports.proxy and sidecar.ports.admin are both %d: give the two listeners different ports" (int $sidecar.ports.proxy)) }}
{{- end }}

{{- /* The sidecar refuses to start with strip and no userTokenIssuers, so catch that here where the routes are known. */}}
{{- if eq $v.egress.unroutedPolicy "strip" }}
{{- $hasIssuers := false }}
{{- if kindIs "string" $v.routes }}
{{- $hasIssuers = regexMatch "(?m)^userTokenIssuers\\s*:" $v.routes }}
{{- else if kindIs "map" $v.routes }}
{{- $hasIssuers = not (empty $v.routes.userTokenIssuers) }}
{{- end }}
{{- /* Empty routes get their own message from obo-sidecar.routesConfigMap. */}}
{{- if and (not $v.existingRoutesConfigMap) (not (empty $v.routes)) (not $hasIssuers) }}
{{- fail "egress.unroutedPolicy is strip, which needs userTokenIssuers in the routes file: list the iss values of the users' tokens (routes.userTokenIssuers), or set egress.unroutedPolicy to forward or deny" }}
{{- end }}
{{- end }}

{{- /* Arguments of `obo-sidecar run`; the image's entry point already ends in "run". */}}
{{- $adminHost := $sidecar.adminListenHost }}
{{- if contains ":" $adminHost }}
{{- $adminHost = printf "[%s]" $adminHost }}
{{- end }}
{{- $args := list
  (printf "--routes=%s/routes.yaml" $routesDir)
  (printf "--listen=127.0.0.1:%d" (int $sidecar.ports.proxy))
  (printf "--admin-listen=%s:%d" $adminHost (int $sidecar.ports.admin))
  (printf "--unrouted-policy=%s" $v.egress.unroutedPolicy) }}
{{- if $v.interception.enabled }}
{{- $args = concat $args (list (printf "--intercept=%s" $v.interception.mode) (printf "--ca-out=%s" $caDir)) }}
{{- if $v.interception.ca.existingSecret }}
{{- $args = concat $args (list (printf "--ca-cert=%s/tls.crt" $caSecretDir) (printf "--ca-key=%s/tls.key" $caSecretDir)) }}
{{- end }}
{{- end }}
{{- range $key := keys $sidecar.settings | sortAlpha }}
{{- $value := get $sidecar.settings $key }}
{{- if not (kindIs "invalid" $value) }}
{{- $args = append $args (printf "--%s=%s" (kebabcase $key) (include "obo-sidecar.flagValue" $value)) }}
{{- end }}
{{- end }}
{{- $args = concat $args $sidecar.extraArgs }}

{{- /* Volumes, and where the sidecar mounts them. Names start with "obo-" to stay clear of the agent's. */}}
{{- $routesKey := ternary $v.existingRoutesConfigMapKey "routes.yaml" (not (empty $v.existingRoutesConfigMap)) }}
{{- $volumes := list (dict "name" "obo-routes" "configMap" (dict "name" (include "obo-sidecar.routesConfigMapName" .) "items" (list (dict "key" $routesKey "path" "routes.yaml")))) }}
{{- /* A directory mount, never subPath: the kubelet never updates subPath mounts, and a directory mount lets a changed routes file reach the running sidecar. */}}
{{- $mounts := list (dict "name" "obo-routes" "mountPath" $routesDir "readOnly" true) }}
{{- $agentMounts := list }}
{{- if $v.interception.enabled }}
{{- /* ca-bundle.crt is about 250 KiB with Node.js 24's roots, and an atomic rewrite briefly holds two copies. */}}
{{- $volumes = append $volumes (dict "name" "obo-ca" "emptyDir" (dict "sizeLimit" "4Mi")) }}
{{- $mounts = append $mounts (dict "name" "obo-ca" "mountPath" $caDir) }}
{{- $agentMounts = append $agentMounts (dict "name" "obo-ca" "mountPath" $caDir "readOnly" true) }}
{{- if $v.interception.ca.existingSecret }}
{{- /* Only the sidecar container mounts the CA key, and it runs as a single user, so 0444 exposes it to no other container; a stricter mode would depend on fsGroup being set. */}}
{{- $caItems := list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key") }}
{{- $volumes = append $volumes (dict "name" "obo-ca-secret" "secret" (dict "secretName" $v.interception.ca.existingSecret "items" $caItems "defaultMode" 292)) }}
{{- $mounts = append $mounts (dict "name" "obo-ca-secret" "mountPath" $caSecretDir "readOnly" true) }}
{{- end }}
{{- end }}
{{- range $v.issuerSecrets }}
{{- $volumes = append $volumes (dict "name" (printf "obo-issuer-%s" .name) "secret" (dict "secretName" .secretName)) }}
{{- $mounts = append $mounts (dict "name" (printf "obo-issuer-%s" .name) "mountPath" .mountPath "readOnly" true) }}
{{- end }}
{{- $projected := $v.actorToken.projected }}
{{- if $projected.enabled }}
{{- if not $projected.audience }}
{{- fail "actorToken.projected.audience is required when actorToken.projected.enabled is true: set it to the audience your identity provider expects in actor tokens" }}
{{- end }}
{{- $token := dict "serviceAccountToken" (dict "audience" $projected.audience "expirationSeconds" (int $projected.expirationSeconds) "path" (base $projected.path)) }}
{{- $volumes = append $volumes (dict "name" "obo-actor-token" "projected" (dict "sources" (list $token))) }}
{{- $mounts = append $mounts (dict "name" "obo-actor-token" "mountPath" (dir $projected.path) "readOnly" true) }}
{{- end }}

{{- /* The sidecar container. */}}
{{- $image := $sidecar.image.repository }}
{{- if not $image }}
{{- fail "sidecar.image.repository is required: push the image built from the repository's Dockerfile to your registry and set it, e.g. --set sidecar.image.repository=registry.example.com/platform/obo-sidecar" }}
{{- end }}
{{- if $sidecar.image.digest }}
{{- $image = printf "%s@%s" $image $sidecar.image.digest }}
{{- else }}
{{- $image = printf "%s:%s" $image (default (include "obo-sidecar.appVersion" .) $sidecar.image.tag) }}
{{- end }}
{{- $probe := dict "httpGet" (dict "path" "/readyz" "port" "obo-admin") }}
{{- $container := dict
  "name" "obo-sidecar"
  "image" $image
  "imagePullPolicy" $sidecar.image.pullPolicy
  "restartPolicy" "Always"
  "args" $args
  "ports" (list (dict "name" "obo-admin" "containerPort" (int $sidecar.ports.admin) "protocol" "TCP"))
  "startupProbe" (merge (deepCopy $sidecar.startupProbe) $probe)
  "readinessProbe" (merge (deepCopy $sidecar.readinessProbe) $probe)
  "livenessProbe" (merge (deepCopy $sidecar.livenessProbe) (dict "httpGet" (dict "path" "/healthz" "port" "obo-admin")))
  "resources" $sidecar.resources
  "securityContext" $sidecar.securityContext
  "volumeMounts" $mounts }}
{{- if $sidecar.env }}
{{- $_ := set $container "env" $sidecar.env }}
{{- end }}

{{- /* The agent's environment. NO_PROXY lists the pod's own IP, where the admin listener is. */}}
{{- $noProxy := concat $v.proxyEnv.noProxy $v.proxyEnv.noProxyExtra (list "$(OBO_POD_IP)") | join "," }}
{{- $agentEnv := list
  (dict "name" "OBO_POD_IP" "valueFrom" (dict "fieldRef" (dict "fieldPath" "status.podIP")))
  (dict "name" "HTTP_PROXY" "value" $proxyUrl)
  (dict "name" "HTTPS_PROXY" "value" $proxyUrl)
  (dict "name" "NO_PROXY" "value" $noProxy)
  (dict "name" "http_proxy" "value" $proxyUrl)
  (dict "name" "https_proxy" "value" $proxyUrl)
  (dict "name" "no_proxy" "value" $noProxy)
  (dict "name" "NODE_USE_ENV_PROXY" "value" "1") }}
{{- if $v.interception.enabled }}
{{- /* ca-bundle.crt is the system roots plus the sidecar's CA, for clients that replace their trust store with the file; Node.js adds NODE_EXTRA_CA_CERTS to its own roots. */}}
{{- $bundle := printf "%s/ca-bundle.crt" $caDir }}
{{- $agentEnv = concat $agentEnv (list
  (dict "name" "SSL_CERT_FILE" "value" $bundle)
  (dict "name" "REQUESTS_CA_BUNDLE" "value" $bundle)
  (dict "name" "CURL_CA_BUNDLE" "value" $bundle)
  (dict "name" "NODE_EXTRA_CA_CERTS" "value" (printf "%s/ca.crt" $caDir))) }}
{{- end }}

{{- $annotations := dict }}
{{- if $v.metrics.podAnnotations }}
{{- $annotations = dict "prometheus.io/scrape" "true" "prometheus.io/port" (toString (int $sidecar.ports.admin)) "prometheus.io/path" "/metrics" }}
{{- end }}

{{- toYaml (dict
  "initContainers" (list $container)
  "volumes" $volumes
  "agentEnv" $agentEnv
  "agentVolumeMounts" $agentMounts
  "podAnnotations" $annotations) }}
{{- end }}

{{/*
Renders the routes ConfigMap from values.routes, or nothing when values.existingRoutesConfigMap
names one. values.routes may be a mapping or the file's text (helm --set-file routes=FILE), which
keeps its comments and key order.
*/}}
{{- define "obo-sidecar.routesConfigMap" -}}
{{- $v := .values }}
{{- if and $v.existingRoutesConfigMap (not (empty $v.routes)) }}
{{- fail "routes and existingRoutesConfigMap are both set: keep one, since the sidecar reads a single routes file" }}
{{- end }}
{{- if not $v.existingRoutesConfigMap }}
{{- if empty $v.routes }}
{{- fail "routes is empty: set routes (the routes file as YAML, see routes.example.yaml) or existingRoutesConfigMap" }}
{{- end }}
{{- $labels := .labels }}
{{- if not $labels }}
{{- $labels = dict "app.kubernetes.io/name" "obo-sidecar" "app.kubernetes.io/instance" .top.Release.Name "app.kubernetes.io/managed-by" .top.Release.Service }}
{{- end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "obo-sidecar.routesConfigMapName" . }}
  labels:
    {{- toYaml $labels | nindent 4 }}
    app.kubernetes.io/component: routes
data:
  routes.yaml: |
    {{- if kindIs "string" $v.routes }}
    {{- $v.routes | trimSuffix "\n" | nindent 4 }}
    {{- else }}
    {{- toYaml $v.routes | nindent 4 }}
    {{- end }}
{{- end }}
{{- end }}
