//go:build tools

// Package tools pins cri-tools so that `go test -c sigs.k8s.io/cri-tools/cmd/critest` builds the
// critest binary from the module proxy (cmd/critest holds only a _test.go file, which
// `go install` refuses).
package tools

import _ "sigs.k8s.io/cri-tools/pkg/validate"
