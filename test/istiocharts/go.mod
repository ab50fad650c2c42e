// Module istiocharts pins Istio's source (istio.io/istio) for the e2e tests:
// they take Istio's own Helm charts (manifests/charts/base and
// manifests/charts/istio-control/istio-discovery) from this module's
// download in the module cache. It is a separate module so that the main
// module's graph stays small.
module github.com/meshrev/meshrev/test/istiocharts

go 1.26.0

require istio.io/istio v0.0.0-20260827124520-eed52ebb66ad
