# Stowage: the two commands a user needs are `make run` and `make test`; everything else is a
# step they call. Every step is idempotent, so a second `make setup` costs a few seconds.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TOP      := $(CURDIR)
VENV     := $(TOP)/.venv
PY       := $(VENV)/bin/python
TOOLS    := $(TOP)/.tools/bin
GO       ?= go
export PATH := $(TOOLS):$(VENV)/bin:/usr/local/go/bin:$(PATH)

CRI_TOOLS_VERSION  := v1.36.0
CSI_TEST_VERSION   := v5.6.0
KUBERNETES_VERSION := v1.36.3
# The kubelet reports its version from these (the release's publication time on the proxy).
KUBELET_LDFLAGS := -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(KUBERNETES_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=36 \
	-X $(p).gitTreeState=clean -X $(p).buildDate=2026-07-22T18:07:38Z)

# Debian packages: the OCI runtimes and monitor we drive, the reference peers we compare with,
# a real registry for pull tests, and what test images are built from.
APT_PACKAGES := runc crun conmon docker-registry containerd containernetworking-plugins \
	busybox nginx-light procps util-linux iptables nftables iproute2 zstd gcc libc6-dev \
	e2fsprogs

PYTEST_ARGS ?=

.PHONY: help setup apt venv proto tools cni-install run test unit lint bench conformance-cri \
	conformance-csi e2e-kubelet clean

help:
	@echo "make run    - set up and bring the node stack up (CRI socket /run/stowage/stowage.sock)"
	@echo "make test   - set up and run every test (unit, root integration, conformance)"
	@echo "other targets: setup lint proto bench conformance-cri conformance-csi e2e-kubelet"

setup: apt venv proto tools cni-install

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing Debian packages: $$missing"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The venv is rebuilt only when pyproject.toml changes.
venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

proto: $(TOP)/cri_shim/_pb/api_pb2.py
$(TOP)/cri_shim/_pb/api_pb2.py: proto/pins.txt proto/generate.sh $(VENV)/.stamp
	PYTHON=$(PY) proto/generate.sh

tools: $(TOOLS)/crictl $(TOOLS)/critest $(TOOLS)/csi-sanity $(TOOLS)/stowage-pause $(TOOLS)/kubelet

# The process that holds a pod's shared PID namespace: static, a few hundred KB of memory.
$(TOOLS)/stowage-pause: cri_shim/infra/stowage-pause.c
	mkdir -p $(TOOLS)
	gcc -static -Os -Wall -Werror -o $@ $<

$(TOOLS)/crictl:
	GOBIN=$(TOOLS) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRI_TOOLS_VERSION)

# cmd/critest holds only a _test.go file: it is built with `go test -c` from a module of ours.
$(TOOLS)/critest: tests/e2e/critest/go.mod tests/e2e/critest/go.sum
	mkdir -p $(TOOLS)
	cd tests/e2e/critest && $(GO) test -c -o $(TOOLS)/critest sigs.k8s.io/cri-tools/cmd/critest

# k8s.io/kubernetes replaces its staging modules with ./staging paths, so `go install` refuses
# it: tests/e2e/kubelet is a wrapper module that mirrors them onto the published modules.
$(TOOLS)/kubelet: tests/e2e/kubelet/go.mod tests/e2e/kubelet/go.sum
	mkdir -p $(TOOLS)
	cd tests/e2e/kubelet && $(GO) build -trimpath -ldflags '$(KUBELET_LDFLAGS)' \
		-o $(TOOLS)/kubelet k8s.io/kubernetes/cmd/kubelet

$(TOOLS)/csi-sanity:
	GOBIN=$(TOOLS) $(GO) install github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$(CSI_TEST_VERSION)

# Our CNI plugins into /opt/cni/bin (next to, never over, the reference plugins) and, only if
# /etc/cni/net.d has no network yet, the default pod network (10.88.0.0/16 on stowage0).
cni-install: venv
	$(PY) -m cni_bridge.install --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d

# The node stack in the foreground: a demo image imported (no registry needed), the optional
# CNI agent, and stowage-cri on /run/stowage/stowage.sock. Ctrl-C stops it all.
run: setup
	$(PY) -m tests.images.demo .cache/demo-image.tar
	$(VENV)/bin/stowage images import --base-name docker.io/library/busybox .cache/demo-image.tar
	@echo "run: stowage-cri on unix:///run/stowage/stowage.sock; try:"
	@echo "  $(TOOLS)/crictl --runtime-endpoint unix:///run/stowage/stowage.sock images"
	$(PY) -m cni_bridge.agent & agent=$$!; trap 'kill $$agent 2>/dev/null' EXIT INT TERM; \
		$(VENV)/bin/stowage-cri

unit: venv proto
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory conformance-cri

lint: venv proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy cri_shim images cni_bridge csi_hostpath

conformance-cri: setup
	$(PY) -m tests.e2e.critest_run

conformance-csi: setup
	$(PY) -m tests.e2e.csi_sanity_run
	$(PY) -m tests.e2e.csi_sanity_run --access-type block

e2e-kubelet: setup
	$(PY) -m tests.e2e.kubelet_run

bench: setup
	-$(MAKE) --no-print-directory $(TOOLS)/hostpathplugin
	$(PY) -m bench.run

# The reference CSI driver for the benchmark, from the Go module proxy. Its go.mod has replace
# directives, so it is built through a wrapper module that mirrors them. Where the proxy
# refuses the module, the benchmark reports the reference as unavailable.
$(TOOLS)/hostpathplugin: bench/csi_reference/go.mod
	cd bench/csi_reference && GOFLAGS=-mod=mod $(GO) build -ldflags "-X main.version=v1.18.0" \
		-o $(TOOLS)/hostpathplugin github.com/kubernetes-csi/csi-driver-host-path/cmd/hostpathplugin

clean:
	rm -rf build .cache cri_shim/_pb csi_hostpath/_pb
