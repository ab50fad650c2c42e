// Package devcluster builds and runs meshrev's local Kubernetes cluster: a real
// control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
// compiled from pinned Go modules, plus kwok simulating fake nodes on which
// scheduled pods become Running and Ready. Everything listens on 127.0.0.1 on
// free ports, so several clusters can run side by side.
//
// The binaries are built once into a cache outside the repository (see
// [CacheDir]) from the build modules under hack/cluster/build. A cluster lives in
// a directory (see [Layout]): the admin kubeconfig, bin/ with kubectl and helm,
// logs/ with one log per component, and cluster/ with pid files, PKI and data.
//
// The same code backs `go run ./hack/cluster up|down|env|build` and the e2e
// tests' TestMain, which call [Start] once per test binary.
package devcluster
