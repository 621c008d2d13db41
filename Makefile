# ct-entitlements — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
LINT_VENV ?= .venv-lint
CHECKOV_VENV ?= .venv-checkov
BENCH_VENV ?= .venv-bench
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
# Tools the tests and the demo use, from the project venv.
export MOTO_SERVER := $(abspath $(VENV))/bin/moto_server
export CARGO_LAMBDA := $(abspath $(VENV))/bin/cargo-lambda
export PATH := $(abspath $(VENV))/bin:$(PATH)
# An end-to-end test that cannot start the local world fails here, as in CI (tests/src/world.rs).
export CT_REQUIRE_WORLD := 1

.PHONY: help venv demo test lint fmt-check clippy unit package sam-build bench scale clean soak readings structure release

help:
	@echo "make demo     run account-lifecycle locally against an emulated AWS organization"
	@echo "make test     formatting, lints and every test (unit, emulator, end-to-end)"
	@echo "make lint     cfn-lint, sam validate --lint and checkov on template.yaml (part of make test)"
	@echo "make package  release build of the Lambda bootstraps (x86_64 here; see docs/deploy.md for arm64)"
	@echo "make sam-build  sam build for x86_64, Architecture=x86_64 (what CI can build here)"
	@echo "make release VERSION=x.y.z  versioned artifacts in dist/ for a team without Rust (docs/deploy.md)"
	@echo "make soak     reliability soak: faults through the queue path, then property tests at 20000 cases"
	@echo "make readings  the emulator's readings of the undocumented x nine scenarios: the convergence matrix (issue 17)"
	@echo "make scale    organization scale: 10,000 accounts (SCALE_ACCOUNTS), 50 OUs, mixed distribution modes"
	@echo "make structure  file and function sizes, shared's import cycles and pub items (issue 18; STRUCTURE_ARGS=--json)"
	@echo "make bench    benchmarks vs a Python 3.11 + boto3 peer: init, memory, onboarding, backfill, size (docs/performance.md)"

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

$(LINT_VENV)/.installed: requirements-lint.txt
	python3 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lint.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

TEMPLATES := template.yaml $(wildcard examples/*.yaml)

# Zero findings; every suppression carries its justification in the template's Metadata.
lint: $(LINT_VENV)/.installed $(CHECKOV_VENV)/.installed
	$(LINT_VENV)/bin/cfn-lint $(TEMPLATES)
	$(LINT_VENV)/bin/sam validate --lint --template-file template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation $(addprefix -f ,$(TEMPLATES))

demo: venv
	cargo build --quiet -p local-world --bin demo
	cargo run --quiet -p local-world --bin demo

test: venv lint fmt-check clippy unit

# The whole convergence matrix (tests/tests/readings.rs; make test runs its fast subset): the
# matrix is printed on stderr, the engines' JSON reports go to target/readings.log.
readings: venv
	cargo test --workspace --test readings -- --include-ignored --nocapture >target/readings.log

# Reliability soak (docs/reliability.md): SOAK_ACCOUNTS accounts (default 200) x 3 licenses
# through the queue path under injected throttling, 5xx, faults after commit and latency spikes;
# then every parser's property tests with PROPTEST_CASES cases each (make test runs 64).
PROPTEST_CASES ?= 20000
# --workspace everywhere: one feature resolution, so nothing is compiled twice (time, disk).
soak: venv
	cargo test --workspace --test soak -- --ignored --nocapture
	PROPTEST_CASES=$(PROPTEST_CASES) cargo test --workspace --test prop_parsers --test prop_request --test prop_options

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# Every test against the zero-delay emulator, then the end-to-end suites again against the
# "realistic" one (grant workflows and activations take seconds, as in AWS they take minutes).
REALISTIC_SUITES := e2e_lifecycle e2e_fidelity e2e_reconcile e2e_delegated e2e_vending catalog_e2e e2e_binary e2e_distribution catalog_distribution catalog_trust
unit:
	cargo test --workspace
	CT_EMULATOR_PROFILE=realistic cargo test --workspace $(addprefix --test ,$(REALISTIC_SUITES))

package: venv
	cargo lambda build --release --x86-64 --bin account-lifecycle --bin reconciler --bin org-bootstrap --bin catalog-provisioning --bin account-vending --bin notifier
	@ls -l target/lambda/*/bootstrap

# The template's Architecture parameter defaults to arm64; these machines build x86_64 only
# (docs/deploy.md). sam build reads Globals' Architectures through the parameter override.
sam-build: venv $(LINT_VENV)/.installed
	$(LINT_VENV)/bin/sam build --no-cached --template-file template.yaml --parameter-overrides Architecture=x86_64 --build-dir .aws-sam/build
	@ls -l .aws-sam/build/*/bootstrap

# A release a team deploys without Rust (docs/deploy.md): dist/ct-entitlements-$(VERSION)/ holds
# each function's zipped bootstrap, a template pointing at the zips, RELEASE-NOTES.md (the
# CHANGELOG entry) and SHA256SUMS; dist/ct-entitlements-$(VERSION)-<arch>.tar.gz holds the
# directory. VERSION must be Cargo.toml's workspace version and have a CHANGELOG.md entry
# (checked before building). Deterministic: the same bootstraps give the same checksums.
release:
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z (Cargo.toml's workspace version)" >&2; exit 2; }
	python3 scripts/release.py --check $(VERSION)
	$(MAKE) --no-print-directory package
	python3 scripts/release.py $(VERSION)

# Benchmarks, not tests: never part of `make test` or CI; fails only when a run errors.
# Prints every figure with its ratio and writes target/bench/report.json (docs/performance.md).
$(BENCH_VENV)/.installed: requirements-bench.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench: venv $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/bench.py $(BENCH_ARGS)

# Organization scale (docs/performance.md): SCALE_ACCOUNTS members (default 10,000) in 50 OUs,
# 5 licenses in the three distribution modes; long (not part of make bench or CI).
scale: venv $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/bench.py --only scale $(BENCH_ARGS)

# Sizes of the production sources: files over 600 lines, functions over 80, import cycles among
# shared's modules, shared's pub/pub(crate) items. Stdlib Python; measures, never fails the build.
structure:
	@python3 bench/structure.py $(STRUCTURE_ARGS)

clean:
	cargo clean
	rm -rf $(VENV) $(LINT_VENV) $(CHECKOV_VENV) $(BENCH_VENV) .aws-sam .template.x86_64.yaml dist
