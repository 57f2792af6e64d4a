# ngx_http_oauth2_module
#   make demo    build, start the test OpenID Provider and nginx with nginx-conf/demo.conf
#   make test    rustfmt and clippy, unit tests (oauth2-core), and the t/ suite against the real provider

CARGO ?= cargo
PROFILE ?= debug
CARGO_FLAGS = $(if $(filter release,$(PROFILE)),--release,)
# the t/ suite needs the test hooks (see Cargo.toml); `make build` and
# releases are built without them
TEST_FEATURES = --features test-hooks

.PHONY: all deps build test lint unit integration demo clean fuzz valgrind reload soak

FUZZ_SECONDS ?= 60
FUZZ_TARGETS = jwt cookie state config

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build $(CARGO_FLAGS) -p ngx_http_oauth2_module

# rustfmt and clippy (warnings are errors), with and without the test hooks
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy -p oauth2-core --all-targets -- -D warnings
	$(CARGO) clippy -p ngx_http_oauth2_module -- -D warnings
	$(CARGO) clippy $(TEST_FEATURES) -p ngx_http_oauth2_module -- -D warnings

unit: deps
	$(CARGO) test -p oauth2-core

integration: deps
	$(CARGO) build $(CARGO_FLAGS) $(TEST_FEATURES) -p ngx_http_oauth2_module
	TEST_PROFILE=$(PROFILE) prove -r t/

test: lint unit integration

demo: build
	PROFILE=$(PROFILE) scripts/demo.sh

# cargo-fuzz (crates.io) needs nightly features: RUSTC_BOOTSTRAP lets the
# stable toolchain build them. Each target runs FUZZ_SECONDS from the
# committed seeds (fuzz/seeds/) into a local corpus (fuzz/corpus/).
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# the whole t/ suite with nginx (master and workers) under valgrind memcheck;
# a block fails on any report with a frame in the module
valgrind: deps
	$(CARGO) build $(TEST_FEATURES) -p ngx_http_oauth2_module
	TEST_NGINX_VALGRIND=1 prove -r t/

reload:
	bench/reload.sh

soak:
	bench/soak.sh

clean:
	$(CARGO) clean
	rm -rf t/servroot-* demo/
