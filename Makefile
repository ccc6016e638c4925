# Tollgate: make run | make test | make lint | make bench | make chart-check | make image | make fuzz
SHELL := /bin/bash
CARGO ?= cargo
CONFIG ?= config/tollgate.example.yaml

# Throwaway values for the example config's secret references, used only when unset.
export TOLLGATE_ADMIN_TOKEN ?= dev-admin-token-change-me
export TOLLGATE_KEY_K1 ?= ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=
export TOLLGATE_CALLER_SECRET ?= dev-only-caller-secret-at-least-32-bytes
export GITHUB_CLIENT_ID ?= dev-github-client-id
export GITHUB_CLIENT_SECRET ?= dev-github-client-secret
export DATABRICKS_CLIENT_ID ?= dev-databricks-client-id
export BILLING_CLIENT_SECRET ?= dev-billing-client-secret
export WEATHER_API_KEY ?= dev-weather-api-key

.PHONY: run build test lint fmt bench bench-load bench-storm bench-soak check-config e2e-deps fuzz chart-check image

run: ## Tollgate on the in-memory store with the example config
	$(CARGO) run --release -- serve --config $(CONFIG)

build:
	$(CARGO) build --release

check-config:
	$(CARGO) run --quiet -- check-config $(CONFIG)

e2e-deps: ## npm packages for the end-to-end tests (oidc-provider, undici); checks python3 requests
	@command -v node >/dev/null || { echo "make test needs node and npm (apt-get install nodejs npm)"; exit 1; }
	@test -d tests/e2e/oidc/node_modules/oidc-provider || npm ci --prefix tests/e2e/oidc --no-audit --no-fund
	@test -d tests/e2e/clients/node_modules/undici || npm ci --prefix tests/e2e/clients --no-audit --no-fund
	@python3 -c 'import requests, jsonschema' 2>/dev/null || { echo "make test needs python3 with requests and jsonschema (pip install requests jsonschema)"; exit 1; }

test: e2e-deps ## every test: unit, corpus, integration (needs curl, openssl, redis-server, node, promtool)
	@command -v curl >/dev/null || { echo "make test needs curl (apt-get install curl)"; exit 1; }
	@command -v openssl >/dev/null || { echo "make test needs openssl (apt-get install openssl)"; exit 1; }
	@command -v redis-server >/dev/null || { echo "make test needs redis-server (apt-get install redis-server)"; exit 1; }
	@command -v promtool >/dev/null || { echo "make test needs promtool (apt-get install prometheus)"; exit 1; }
	$(CARGO) test --all-targets

lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: ## criterion: matching (10/1k/10k patterns), normalization, cache hit, one whole request
	$(CARGO) bench

bench-load: ## Tollgate vs direct, nginx, HAProxy, Envoy on loopback (installs wrk, nginx-light, haproxy, envoy)
	scripts/bench-load load

bench-storm: ## N concurrent requests on an expired token over K processes sharing Redis
	scripts/bench-load storm

SOAK_SECONDS ?= 600
bench-soak: ## fixed-rate load for SOAK_SECONDS; RSS and open descriptors must stay flat
	scripts/bench-load soak --duration $(SOAK_SECONDS)

chart-check: ## helm lint/template, Kubernetes and CRD schemas, tollgate check-config, promtool rules and tests, dashboard queries
	scripts/chart-check

IMAGE ?= tollgate:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image: ## the container image (multi-stage Dockerfile, non-root); needs docker or podman
	docker build -t $(IMAGE) .

FUZZ_SECONDS ?= 60
fuzz: ## every cargo-fuzz target for FUZZ_SECONDS each (URL matching, config loading, credentials)
	scripts/fuzz $(FUZZ_SECONDS)
