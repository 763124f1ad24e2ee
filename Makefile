# The two commands of the README: `make dev` runs the proxy on a local moto S3 and OpenBao Vault,
# `make test` runs lint, type checks and the test suite. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test lint install-dev install-test system-deps conformance localstack checkov bench \
	bench-listing bench-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-dev

install-dev: $(VENV)/.installed-dev
install-test: $(VENV)/.installed-test

dev: $(VENV)/.installed-dev
	$(BIN)/s3proxy dev

lint: $(VENV)/.installed-test
	$(BIN)/ruff check s3proxy tests bench
	$(BIN)/ruff format --check s3proxy tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

tests/js/node_modules/.installed: tests/js/package-lock.json
	cd tests/js && npm ci --silent --no-audit --no-fund
	touch $@

# Debian programs the tests drive (tests/test_backup_tools.py; a throwaway Ceph RADOS Gateway
# for tests/test_rgw.py; a throwaway Redis for tests/test_sharedcache.py; Go for
# tests/test_go_sdks.py), as package:command; installed only when the command is missing.
SYSTEM_DEPS := rclone:rclone s3cmd:s3cmd ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw \
	ceph-common:radosgw-admin redis-server:redis-server golang-go:go

# The Go SDKs' sources (tests/test_go_sdks.py builds its clients from them), as package:file.
SYSTEM_DEPS_FILES := \
	golang-github-aws-aws-sdk-go-v2-dev:/usr/share/gocode/src/github.com/aws/aws-sdk-go-v2/go.mod \
	golang-github-minio-minio-go-v7-dev:/usr/share/gocode/src/github.com/minio/minio-go/v7/go.mod

# pgBackRest and PostgreSQL (tests/test_pgbackrest.py), as package:command; PostgreSQL's
# programs live outside PATH, so its command is a path (a glob over the version).
SYSTEM_DEPS_PG := pgbackrest:pgbackrest postgresql:/usr/lib/postgresql/*/bin/initdb

system-deps:
	@missing=""; for d in $(SYSTEM_DEPS) $(SYSTEM_DEPS_PG); do command -v $${d#*:} >/dev/null 2>&1 || missing="$$missing $${d%%:*}"; done; \
	for d in $(SYSTEM_DEPS_FILES); do [ -e $${d#*:} ] || missing="$$missing $${d%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		apt-cache show $$missing >/dev/null 2>&1 || apt-get update; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# LocalStack's S3 verifies checksums (tests/localstack.py, tests/test_upstream_checksums.py). It
# gets its own virtualenv so its pins never touch $(VENV); 4.13.1 is the last release that runs
# on Python 3.11. The stamp names the version: changing it reinstalls.
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_VERSION := 4.13.1
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed-$(LOCALSTACK_VERSION)

$(LOCALSTACK_STAMP):
	$(PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet \
		'localstack-core[base-runtime]==$(LOCALSTACK_VERSION)' 'cbor2<6' 'pyopenssl<25' service-identity
	touch $@

localstack: $(LOCALSTACK_STAMP)

# checkov lints deploy/ (tests/test_manifests.py). Its own virtualenv: it pins boto3/botocore
# older than the proxy needs.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

checkov: $(CHECKOV_STAMP)

test: lint localstack checkov tests/js/node_modules/.installed system-deps
	$(BIN)/pytest

# ceph/s3-tests directly against moto and through the proxy; writes docs/compatibility.md.
# Not part of `make test`: make conformance S3TESTS_DIR=/path/to/s3-tests
conformance: $(VENV)/.installed-dev
	$(BIN)/python bench/conformance.py

# The benchmark of issue 10 (docs/performance.md): an in-memory S3 upstream (Go), nginx, OpenBao
# and s3proxy on loopback; direct / nginx / s3proxy side by side. Then the listing and HEAD
# workloads of issue 21 against a throwaway Ceph RGW with redis-server (bench/listing.py; alone:
# make bench-listing). Installs nginx, wrk, Go, curl, Ceph and redis-server from Debian when
# missing, py-spy into $(VENV). Options: make bench BENCH_ARGS='--quick' LISTING_ARGS='--objects 1000'
BENCH_TOOLS := nginx:nginx wrk:wrk go:golang-go curl:curl
LISTING_TOOLS := ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw radosgw-admin:ceph-common \
	redis-server:redis-server

bench: $(VENV)/.installed-dev
	@$(MAKE) --no-print-directory bench-tools TOOLS="$(BENCH_TOOLS) $(LISTING_TOOLS)"
	@[ -x $(BIN)/py-spy ] || $(BIN)/python -m pip install --quiet py-spy
	@# The image's pip install compiles the bytecode: so does this (the start is measured).
	@$(BIN)/python -m compileall -q s3proxy >/dev/null
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/listing.py $(LISTING_ARGS)

bench-listing: $(VENV)/.installed-dev
	@$(MAKE) --no-print-directory bench-tools TOOLS="$(LISTING_TOOLS)"
	$(BIN)/python bench/listing.py $(LISTING_ARGS)

# Installs the Debian packages of TOOLS (command:package) whose command is missing.
bench-tools:
	@missing=""; for t in $(TOOLS); do \
		command -v $${t%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${t%%:*} ] || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		apt-cache show $$missing >/dev/null 2>&1 || apt-get update; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
