//go:build tools

// Package tools pins k8s.io/kubernetes so that `go build k8s.io/kubernetes/cmd/kubelet` builds
// the stock kubelet from the module proxy, with the replace directives of go.mod.
package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
