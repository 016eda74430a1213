# tunefleet — set-up, local fleet, demo and tests. Run as root on Debian/Ubuntu.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
HOSTS ?= 3
PG ?= 1
APT_PACKAGES := python3 python3-venv openssh-server openssh-client sudo iproute2 util-linux procps sysbench apache2-utils postgresql postgresql-client nginx-light redis-server redis-tools wrk fio iperf3 chromium tuned postgresql-doc-15

.PHONY: setup apt venv fleet-up fleet-down ray-up ray-down demo lint test test-unit test-e2e bench bench-real bench-scale clean

setup: apt venv

apt: .stamp-apt
.stamp-apt:
	@command -v apt-get >/dev/null || { echo "make setup: apt-get not found (Debian/Ubuntu only; see README for other systems)"; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)
	touch $@

venv: .stamp-venv
.stamp-venv: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned in the same command, or pip resolves a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0 -e '.[test]'
	touch $@

fleet-up: setup
	HOSTS=$(HOSTS) PG=$(PG) deploy/fleet-up.sh

fleet-down:
	deploy/fleet-down.sh

# a Ray head and one worker node per network of the local fleet; prints the RAY_ADDRESS to use
ray-up: venv
	deploy/ray-up.sh

ray-down:
	deploy/ray-down.sh

demo: fleet-up
	$(BIN)/tunefleet check --hosts inventory/local.yml
	$(BIN)/tunefleet run "make new connections to my web servers faster" --hosts inventory/local.yml --yes --budget 24 --seed 1

# ruff (pyproject.toml: the rules and why) and mypy (strict on the run API and its result, every
# function body checked elsewhere); before the fleet comes up, so a lint failure costs seconds
lint: venv
	$(BIN)/ruff check controller node_agent bench tests && $(BIN)/mypy

test: setup lint
	BASTION=1 HOSTS=3 PG=1 deploy/fleet-up.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=20 tests; rc=$$?; deploy/fleet-down.sh; exit $$rc

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

bench: fleet-up
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/strategies.py --out docs/benchmarks.md
	$(BIN)/python bench/simbench.py --out docs/benchmarks.md
	$(BIN)/python bench/eval_rate.py --hosts inventory/local.yml --evaluations 150 --out docs/benchmarks.md
	$(BIN)/python bench/transfer.py --hosts inventory/local.yml --out docs/benchmarks.md

# real services (PostgreSQL, nginx, Redis, a long-distance link, file writes, the CPU control) tuned at
# budget 24 against the expert profiles, in one interleaved verification each (about two hours)
bench-real: fleet-up
	$(BIN)/python bench/real.py --hosts inventory/local.yml --out docs/benchmarks.md

# fleet scale, threads and Ray against the naive loop, on fleets of its own beside the default one:
# 64 hosts whose route delays ACKs as a real network does, and 3 whose route ACKs at once (as the default fleet's)
bench-scale: venv
	FLEET_NAME=scale FLEET_NET=10.87.90 HOSTS=64 PG=0 QUICKACK=0 deploy/fleet-up.sh && \
	  FLEET_NAME=quick FLEET_NET=10.87.93 HOSTS=3 PG=0 QUICKACK=1 deploy/fleet-up.sh && \
	  $(BIN)/python bench/scale.py --hosts inventory/local-scale.yml --hosts inventory/local-quick.yml \
	  --sizes 1,3,16,64 --rounds 10,60 --sleep-rounds 3 --repeats 3 --out docs/benchmarks.md; rc=$$?; \
	  FLEET_NAME=scale deploy/fleet-down.sh; FLEET_NAME=quick deploy/fleet-down.sh; exit $$rc

clean: fleet-down
	rm -rf $(VENV) .stamp-* build *.egg-info
