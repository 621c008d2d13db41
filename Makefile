# ct-entitlements — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
# Tools the tests and the demo use, from the project venv.
export MOTO_SERVER := $(abspath $(VENV))/bin/moto_server
export CARGO_LAMBDA := $(abspath $(VENV))/bin/cargo-lambda
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: help venv demo test fmt-check clippy unit package clean

help:
	@echo "make demo     run account-lifecycle locally against an emulated AWS organization"
	@echo "make test     formatting, lints and every test (unit, emulator, end-to-end)"
	@echo "make package  release build of the Lambda bootstraps (x86_64 here; see README for arm64)"

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

demo: venv
	cargo build --quiet -p local-world --bin demo
	cargo run --quiet -p local-world --bin demo

test: venv fmt-check clippy unit

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

package: venv
	cargo lambda build --release --x86-64 --bin account-lifecycle
	@ls -l target/lambda/*/bootstrap

clean:
	cargo clean
	rm -rf $(VENV)
