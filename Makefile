# depth_nodes: two commands do everything on a fresh Debian/Ubuntu machine.
#   make demo   set up, then fly the demo and write a report
#   make test   set up, then run the whole test suite
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Keep DDS traffic of tests and demos on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all setup system-deps test test-fast demo bench lock clean

all: test

system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
	  echo "[setup] installing Debian packages needed by Open3D (libusb-1.0-0, libgomp1)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libusb-1.0-0 libgomp1; \
	fi

$(STAMP): requirements.lock setup.py | system-deps
	@echo "[setup] creating $(VENV) with pinned dependencies (first run takes a few minutes)"
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ required"'
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.lock 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(VPY) -m pip check >/dev/null || { echo "[setup] dependency check failed"; exit 1; }
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: system-deps $(STAMP)

test: setup
	$(VPY) -m pytest -n 2 --dist loadgroup test

test-fast: setup
	$(VPY) -m pytest -n 2 --dist loadgroup -m "not slow" test

demo: setup
	$(VENV)/bin/depth-nodes demo

bench: setup
	$(VENV)/bin/depth-nodes bench conversions --json

lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q -r requirements.in
	.venv-lock/bin/pip freeze | $(PYTHON) tools/freeze_lock.py > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) out build install log *.egg-info
