# ngx_http_oauth2_module
#   make demo    build, start the test OpenID Provider and nginx with nginx-conf/demo.conf
#   make test    unit tests (oauth2-core) and the t/ suite against the real provider

CARGO ?= cargo
PROFILE ?= debug
CARGO_FLAGS = $(if $(filter release,$(PROFILE)),--release,)
# the t/ suite needs the test hooks (see Cargo.toml); `make build` and
# releases are built without them
TEST_FEATURES = --features test-hooks

.PHONY: all deps build test unit integration demo clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build $(CARGO_FLAGS) -p ngx_http_oauth2_module

unit: deps
	$(CARGO) test -p oauth2-core

integration: deps
	$(CARGO) build $(CARGO_FLAGS) $(TEST_FEATURES) -p ngx_http_oauth2_module
	TEST_PROFILE=$(PROFILE) prove -r t/

test: unit integration

demo: build
	PROFILE=$(PROFILE) scripts/demo.sh

clean:
	$(CARGO) clean
	rm -rf t/servroot-* demo/
