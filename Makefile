# Tollgate: make run | make test | make lint | make bench | make chart-check | make image | make fuzz
# `make setup` (run by test and chart-check) installs what a fresh Debian or Ubuntu machine lacks.
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
export DEMO_API_KEY ?= dev-demo-api-key-not-a-secret
DEV_VARS := TOLLGATE_ADMIN_TOKEN TOLLGATE_KEY_K1 TOLLGATE_CALLER_SECRET GITHUB_CLIENT_ID GITHUB_CLIENT_SECRET \
	DATABRICKS_CLIENT_ID BILLING_CLIENT_SECRET WEATHER_API_KEY DEMO_API_KEY

.PHONY: run dev-env setup build test readme-test lint fmt bench bench-load bench-latency bench-tls bench-intercept bench-users bench-grow bench-streams bench-callgrind bench-callgrind-users bench-callgrind-paced bench-outage bench-storm bench-soak check-config fuzz chart-check image

run: ## Tollgate on the in-memory store with the example config, and the demo upstream on 127.0.0.1:8082
	scripts/dev-run $(CONFIG)

dev-env: ## the throwaway values make run uses, for your shell: eval "$$(make -s dev-env)"
	@$(foreach v,$(DEV_VARS),printf 'export %s=%q\n' $(v) "$$$(v)";)

setup: ## what a fresh machine lacks: installs it as root, otherwise prints the command that would
	scripts/setup

build:
	$(CARGO) build --release

check-config:
	$(CARGO) run --quiet -- check-config $(CONFIG)

test: setup ## every test: unit, corpus, integration over real sockets, then the README walkthrough
	$(CARGO) test --all-targets
	scripts/readme-walkthrough

readme-test: setup ## runs the README's runnable snippets, in order, against make run
	scripts/readme-walkthrough

lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: ## criterion: matching (10/1k/10k patterns), normalization, cache hit, one whole request
	$(CARGO) bench --bench policy --bench request

bench-load: ## Tollgate vs direct, nginx, HAProxy, Envoy on loopback (installs wrk, nginx-light, haproxy, envoy)
	scripts/bench-load load

bench-latency: ## the tail at moderate load (8 connections, 2 ms think) on a quiet and a busy machine, Tollgate against nginx round by round, in turns of 200 ms
	scripts/bench-load latency --rounds 7 --conditions quiet,busy,contended

bench-tls: ## the same peers originating TLS to an HTTPS upstream (budget: nginx's req/s at no more CPU per request)
	scripts/bench-load tls

bench-intercept: ## CONNECT interception vs Squid ssl-bump and mitmproxy, kept-alive tunnels and a tunnel per request (budget: 2x the best)
	scripts/bench-load intercept --rounds 3

bench-users: ## 10,000 users, each with their own JWT and stored token: memory and Redis, warm and cold
	scripts/bench-load users --rounds 3

bench-grow: ## req/s and CPU per request as patterns, connectors and users grow
	scripts/bench-load grow

bench-streams: ## 9,000 open SSE streams through Tollgate and nginx: memory per stream, CPU while open, event latency
	scripts/bench-load streams

bench-callgrind: ## instructions per request under valgrind's callgrind (small and 16 KiB answers); BASELINE=bin compares
	scripts/bench-load callgrind $(if $(BASELINE),--baseline $(BASELINE))

bench-callgrind-users: ## callgrind on the many-users path (1 and 2,000 users) with data-cache misses; BASELINE=bin compares
	scripts/bench-load callgrind-users --users 2000 $(if $(BASELINE),--baseline $(BASELINE))

bench-callgrind-paced: ## one request at a time (as at moderate load), Tollgate and nginx: instructions, cache misses, system calls
	scripts/bench-load callgrind-paced $(if $(BASELINE),--baseline $(BASELINE))

bench-outage: ## cached-token req/s before and during a Redis outage (budget: at least 90%)
	scripts/bench-load outage

bench-storm: ## N concurrent requests on an expired token over K processes sharing Redis
	scripts/bench-load storm

SOAK_SECONDS ?= 600
bench-soak: ## fixed-rate load for SOAK_SECONDS; RSS and open descriptors must stay flat
	scripts/bench-load soak --duration $(SOAK_SECONDS)

chart-check: setup ## helm lint/template, Kubernetes and CRD schemas, tollgate check-config, promtool rules and tests, dashboard queries
	scripts/chart-check

IMAGE ?= tollgate:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image: ## the container image (multi-stage Dockerfile, non-root); needs docker or podman
	docker build -t $(IMAGE) .

FUZZ_SECONDS ?= 60
fuzz: ## every cargo-fuzz target for FUZZ_SECONDS each (URL matching, config loading, credentials, request and response heads, chunked)
	scripts/fuzz $(FUZZ_SECONDS)
