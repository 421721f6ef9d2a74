# flowcollect: set up, run, test and benchmark on a Debian 12 host, as root.
#   make run    set everything up if needed, then run the agent on this host's interfaces
#   make test   set everything up if needed, then check (ruff, mypy, import layers) and run the whole test suite
#   make bench  set everything up if needed, then run the benchmark suite (bench/README.md)
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
ARGS ?=

# Build: clang/llvm + libbpf-dev + bpftool for the BPF object and its skeleton, gcc and the
# Python headers for the cffi extension. Tests and benchmarks: iproute2 (namespaces, tc),
# nfdump and pmacct (IPFIX/NetFlow collectors), traffic tools, the peer flow agents, tshark (the
# independent count of a capture), prometheus and promtool, tmux (the terminal view), and
# systemd-analyze for the unit.
APT_PACKAGES := clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config bpftool gcc make git \
	python3 python3-venv python3-dev iproute2 ethtool procps util-linux systemd \
	iperf3 iputils-ping netsniff-ng tcpdump tcpreplay tshark nfdump softflowd pmacct prometheus tmux nftables dnsmasq-base bind9-dnsutils
APT_STAMP := build/.apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8)
VENV_STAMP := $(VENV)/.installed
NATIVE_SOURCES := pyproject.toml setup.py $(wildcard native/*.c native/*.h native/*.py bpf/*.c bpf/*.h)

.PHONY: setup run check test bench clean

setup: $(VENV_STAMP)

$(APT_STAMP):
	@if [ "$$(id -u)" != 0 ]; then echo "make: run as root (apt-get, BPF and network namespaces need it)" >&2; exit 1; fi
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make: installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p build && touch $@

# setuptools and wheel in the venv too: tests build the wheel a user's `pip install .` would, offline.
$(VENV_STAMP): $(APT_STAMP) $(NATIVE_SOURCES)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip 'setuptools>=77' wheel
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	@touch $@

run: setup
	$(VENV)/bin/flowcollect $(ARGS)

# Static checks, configured in pyproject.toml: lint, strict types, and the import-linter contracts
# that keep each layer of flowcollect/ importing only the layers below it.
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: check
	$(VENV)/bin/python -m pytest $(ARGS)

bench: setup
	$(VENV)/bin/python -m bench.run_all $(ARGS)

clean:
	rm -rf build $(VENV) flowcollect/kernel/_native*.so flowcollect/kernel/_native.c *.egg-info
