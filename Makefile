# ngx_http_oauth2_module
#   make demo    build, start the test OpenID Provider and nginx with nginx-conf/demo.conf
#   make test    rustfmt and clippy, unit tests (oauth2-core), the t/ suite against the real provider,
#                nginx's own build of the module (config), and the Debian package in Debian's nginx

CARGO ?= cargo
PROFILE ?= debug
CARGO_FLAGS = $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all deps build test lint unit integration debian deb addmodule demo clean fuzz valgrind reload soak

# make test also builds the Debian package, installs it into Debian's nginx
# and runs t/ against /usr/sbin/nginx (needs root); DEBIAN=0 leaves that out
DEBIAN ?= 1

FUZZ_SECONDS ?= 60
FUZZ_TARGETS = jwt cookie state config

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build $(CARGO_FLAGS) -p ngx_http_oauth2_module

# rustfmt and clippy (warnings are errors)
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy -p oauth2-core --all-targets -- -D warnings
	$(CARGO) clippy -p ngx_http_oauth2_module -- -D warnings

unit: deps
	$(CARGO) test -p oauth2-core

integration: deps
	$(CARGO) build $(CARGO_FLAGS) -p ngx_http_oauth2_module
	TEST_PROFILE=$(PROFILE) prove -r t/

test: lint unit integration addmodule $(if $(filter 1,$(DEBIAN)),debian,)

# the Debian package libnginx-mod-http-oauth2 for Debian's nginx
deb: deps
	scripts/make-deb.sh

# the package installed into Debian's nginx, nginx -t, and t/ against it
debian: deps
	scripts/debian-test.sh

# nginx's own build of the module (./configure --add-dynamic-module), from
# the vendored nginx source, loaded into the vendored nginx and tested
addmodule: deps
	scripts/addmodule-test.sh

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
	$(CARGO) build -p ngx_http_oauth2_module
	TEST_NGINX_VALGRIND=1 prove -r t/

reload:
	bench/reload.sh

soak:
	bench/soak.sh

clean:
	$(CARGO) clean
	rm -rf t/servroot-* demo/
