# sheetcake: the commands in README.md. Every set-up step lives here, so a fresh Debian machine
# needs nothing but this repository (and root).

SHELL := /bin/bash
CARGO ?= cargo

# Debian packages the build, the tests, the demo and the benchmark need.
#   libdpdk-dev dpdk      DPDK 22.11 headers, libraries and PMD plugins
#   dpdk-dev              dpdk-testpmd, the benchmark's reference
#   clang libclang-dev    bindgen parses the DPDK headers with libclang
#   pkg-config            finds DPDK
#   iproute2 ethtool iputils-ping iperf3 procps   namespaces and real traffic for tests and demo
#   curl                  the RADIUS/DHCP hook examples call the API with it
#   prometheus            the test suite scrapes the box with a real Prometheus (and promtool)
#   freeradius freeradius-rest freeradius-utils   the RADIUS hook's test runs the real server
#                         (a private copy of its configuration, its own ports) and radclient;
#                         the system service Debian starts on install is left alone
#   kea-dhcp4-server isc-dhcp-client   the DHCP hook's test runs the real Kea (its run_script
#                         library comes with kea-common) on a private configuration and a
#                         veth of its own, for dhclient in a namespace; the system service
#                         is left alone
DEBIAN_PACKAGES := libdpdk-dev dpdk dpdk-dev clang libclang-dev pkg-config \
                   iproute2 ethtool iputils-ping iperf3 procps curl prometheus \
                   freeradius freeradius-rest freeradius-utils kea-dhcp4-server isc-dhcp-client

CAPTURES := target/captures

.PHONY: all deps build run demo test test-captures lint bench clean help

all: build

help:
	@echo "make run     install what is missing, build, start the demo (Ctrl-C stops it)"
	@echo "make test    install what is missing, build, run every test"
	@echo "make bench   install what is missing, run the benchmark (results in bench/results/)"

# Installs only what is missing, so it is quick on a machine that has everything.
deps:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust (rustup) first"; exit 1; }
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run as root to install packages"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	$(CARGO) build --release --workspace

run demo: build
	deploy/demo.sh target/release/sheetcake

# Real captures shipped by Debian packages, extracted without installing the packages.
test-captures: $(CAPTURES)/g711a.pcap

$(CAPTURES)/g711a.pcap:
	@mkdir -p $(CAPTURES)/debs
	cd $(CAPTURES)/debs && { apt-get download -q python3-dpkt sip-tester 2>/dev/null || \
	  { apt-get update -qq && apt-get download -q python3-dpkt sip-tester 2>/dev/null; }; }
	for deb in $(CAPTURES)/debs/*.deb; do dpkg -x "$$deb" $(CAPTURES)/x; done
	cp $(CAPTURES)/x/usr/share/doc/python3-dpkt/examples/data/{http,nb6-http,dns_icmp,truncated_dns}.pcap $(CAPTURES)/
	cp $(CAPTURES)/x/usr/share/sip-tester/g711a.pcap $(CAPTURES)/

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps test-captures lint
	SHEETCAKE_CAPTURES=$(CURDIR)/$(CAPTURES) $(CARGO) test --workspace

# On hugepages, as production runs (bench/scripts/hugepages.sh reserves them, or says why not).
bench: deps
	$(CARGO) build --release -p sheetcake-bench
	target/release/sheetcake-bench $$(bench/scripts/hugepages.sh)

clean:
	$(CARGO) clean
