# ngx_http_shared_map: build, run and test.
#
#   make build   objs/ngx_http_shared_map_module.so and objs/nginx (vendored nginx)
#   make run     build, then nginx in the foreground on 127.0.0.1:8080
#   make test    everything CI runs: cargo test, then the t/ suite in real nginx
#   make bench   engine micro-benchmarks and the nginx load comparison
#   make deb     libnginx-mod-http-shared-map for the installed Debian nginx (objs/deb/)
#   make fuzz    libFuzzer on every fuzz target, FUZZ_TIME seconds each
#   make test-valgrind  the t/ suite under valgrind memcheck
#   make test-docker  the t/ suite inside docker/Dockerfile.test; docker/Dockerfile's nginx counts
#   make test-matrix  the t/ suite on nginx 1.31 and 1.30, a smoke test on 1.26,
#                each built from its release tarball by nginx's own build
#
# The t/ suite runs under OpenResty's Test::Nginx: installed (CPAN's Test-Nginx)
# or, where it is not, its lib/ given as TEST_NGINX_LIB.
#
# NGINX_SOURCE_DIR / NGINX_BUILD_DIR build against an existing configured nginx
# tree instead of the vendored one (the ngx crate's own variables).

CARGO    ?= cargo
PROFILE  ?= release
OBJS     := objs
MODULE   := $(OBJS)/ngx_http_shared_map_module.so
NGINX    := $(OBJS)/nginx
TEST_PORT ?= 1984
BROWSER_PORT ?= $(shell echo $$(($(TEST_PORT) + 6000)))
OPENAPI_PORT ?= $(shell echo $$(($(TEST_PORT) + 7000)))

DEB_PACKAGES := libclang-dev libpcre2-dev zlib1g-dev libssl-dev pkg-config \
                libtest-base-perl libtext-diff-perl libwww-perl libipc-run-perl \
                python3 curl libtest-longstring-perl liblist-moreutils-perl

# OpenResty's Test::Nginx: the installed one, else TEST_NGINX_LIB's (absolute,
# since prove runs some files from other directories).
TEST_NGINX_LIB ?=
PROVE = $(shell if perl -MTest::Nginx::Socket -e1 2>/dev/null; then echo prove --timer; \
          elif [ -f "$(TEST_NGINX_LIB)/Test/Nginx/Socket.pm" ]; then echo "prove --timer -I $(abspath $(TEST_NGINX_LIB))"; fi)
NEED_TEST_NGINX = { echo "$@: OpenResty's Test::Nginx is needed: install it from CPAN (cpanm Test::Nginx)," \
                    "or set TEST_NGINX_LIB to the lib/ of a checkout of github.com/openresty/test-nginx"; exit 1; }

ifeq ($(NGINX_BUILD_DIR),)
CARGO_FEATURES :=
else
CARGO_FEATURES := --no-default-features --features export-modules
endif

.PHONY: all build deps run test lint test-engine test-fuzz test-conf test-nginx test-valgrind test-browser test-openapi bench clean fuzz

all: build

deps:
	@command -v $(CARGO) >/dev/null || { echo "Rust is needed: install cargo (https://rustup.rs or apt-get install cargo)"; exit 1; }
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing build dependencies; run:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# The module and nginx are copied beside, then renamed over the old ones, so a
# running nginx keeps the files it mapped (and `make run` works while t/ runs).
build:
	$(CARGO) build --$(PROFILE) -p ngx_http_shared_map $(CARGO_FEATURES)
	@mkdir -p $(OBJS)
	cp target/$(PROFILE)/libngx_http_shared_map_module.so $(MODULE).tmp && mv -f $(MODULE).tmp $(MODULE)
	@if [ -z "$(NGINX_BUILD_DIR)" ]; then \
	  bin=$$(ls -t target/$(PROFILE)/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -1); \
	  test -n "$$bin" || { echo "no vendored nginx binary found"; exit 1; }; \
	  cp "$$bin" $(NGINX).tmp; \
	else cp "$(NGINX_BUILD_DIR)/nginx" $(NGINX).tmp; fi; \
	mv -f $(NGINX).tmp $(NGINX)
	@echo "built $(MODULE) and $(NGINX)"

run: deps build
	@mkdir -p build/run/logs
	@echo "nginx on http://127.0.0.1:8080/ (Ctrl-C stops it)"
	$(NGINX) -p $(CURDIR)/build/run/ -c $(CURDIR)/nginx-conf/nginx.conf -g 'daemon off;'

test: lint test-engine test-fuzz test-conf test-suites test-openapi test-browser test-debian

# The example configurations (and docker/'s) pass `nginx -t` with the module built here.
test-conf: build
	@mkdir -p build/run/logs build/session/logs
	$(NGINX) -t -q -p $(CURDIR)/build/run/ -c $(CURDIR)/nginx-conf/nginx.conf
	$(NGINX) -t -q -p $(CURDIR)/build/session/ -c $(CURDIR)/nginx-conf/session-example.conf \
	  -g 'load_module $(CURDIR)/$(MODULE);'
	@for c in ip-blocklist api-quota prefix-routing stream-conn-limit stream-blocklist stream-sni; do mkdir -p build/$$c/logs; \
	  $(NGINX) -t -q -p $(CURDIR)/build/$$c/ -c $(CURDIR)/nginx-conf/$$c.conf \
	    -g 'load_module $(CURDIR)/$(MODULE);' || exit 1; done
	@mkdir -p build/docker/logs
	@printf 'load_module $(CURDIR)/$(MODULE);\nevents {}\nhttp { include $(CURDIR)/docker/shared-map.conf; }\n' \
	  > build/docker/nginx.conf
	$(NGINX) -t -q -p $(CURDIR)/build/docker/ -c $(CURDIR)/build/docker/nginx.conf
	@echo "example configurations: ok"

# docs/openapi.yaml is valid OpenAPI 3 and describes what a running nginx
# answers (openapi-spec-validator and schemathesis, from PyPI).
test-openapi: build
	TEST_NGINX_BINARY=$(CURDIR)/$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) OPENAPI_PORT=$(OPENAPI_PORT) \
	  timeout 600 t/openapi/check.sh

# The dashboard in a real browser, and pages of other sites and a DNS-rebinding
# page trying to write through the API (t/browser/*.test.mjs, on BROWSER_PORT
# to BROWSER_PORT + 2): Debian's chromium driven by playwright-core (from npm,
# pinned in t/browser/package-lock.json). Skipped with a note where chromium
# or npm is missing, except in CI, which installs both.
test-browser: build
	@if [ -x /usr/bin/chromium ] && command -v npm >/dev/null; then \
	  cd t/browser && npm ci --no-audit --no-fund --silent && \
	  TEST_NGINX_BINARY=$(CURDIR)/$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) DASHBOARD_PORT=$(BROWSER_PORT) \
	    timeout 300 node --test; \
	elif [ -n "$$CI" ]; then echo "test-browser: chromium and npm are needed"; exit 1; \
	else echo "test-browser: skipped (apt-get install chromium nodejs npm to run it)"; fi

lint:
	$(CARGO) fmt --all --check
	bash docs/check-links.sh
	$(CARGO) clippy --release -p shared-map-engine -p shared-map-http-parse --all-targets -- -D warnings
	$(CARGO) clippy --release -p ngx_http_shared_map -- -D warnings

test-engine:
	$(CARGO) test --release -p shared-map-engine -p shared-map-http-parse

# The fuzz targets as plain tests (no libFuzzer, no nightly): every stored input
# under fuzz/corpus/TARGET, findings kept there as regressions, then a fixed set
# of pseudo-random inputs. About a second once built.
test-fuzz:
	$(CARGO) test --release --manifest-path fuzz/Cargo.toml --no-default-features --target-dir target/fuzz

# libFuzzer on each target for FUZZ_TIME seconds (cargo-fuzz, installed from
# crates.io when missing; RUSTC_BOOTSTRAP lets a stable toolchain take its
# nightly flags). New inputs go to target/fuzz-corpus/; a failing input is
# written to fuzz/artifacts/TARGET/ and the run stops: copy it into
# fuzz/corpus/TARGET/ so that `make test-fuzz` keeps it as a regression.
FUZZ_TIME    ?= 60
FUZZ_TARGETS := spec query state ops resp
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t; \
	  echo "fuzzing $$t for $(FUZZ_TIME) s"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir fuzz $$t target/fuzz-corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_TIME) -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 || exit 1; \
	done

test-nginx: build
	@[ -n "$(PROVE)" ] || $(NEED_TEST_NGINX)
	rm -rf t/servroot
	TEST_NGINX_BINARY=$(CURDIR)/$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) \
	TEST_NGINX_SERVER_PORT=$(TEST_PORT) $(PROVE) -r t/

# The same in Test::Nginx's reload mode: a block's new configuration reaches
# the running nginx by HUP instead of a restart (files that cannot run so skip
# themselves and say why).
test-nginx-hup: build
	@[ -n "$(PROVE)" ] || $(NEED_TEST_NGINX)
	rm -rf t/servroot-hup
	TEST_NGINX_USE_HUP=1 TEST_NGINX_BINARY=$(CURDIR)/$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) \
	TEST_NGINX_SERVER_PORT=$(TEST_PORT) TEST_NGINX_SERVROOT=$(CURDIR)/t/servroot-hup $(PROVE) -r t/

# The nginx versions users run, each built from its release tarball by nginx's
# own build (./configure --with-compat ... --add-dynamic-module=REPO, the
# repository's `config`) into build/nginx-VERSION, once: a later run reuses the
# tree, and nginx's make and cargo rebuild only what changed. The tarball is
# taken from NGINX_TARBALLS, else downloaded from nginx.org. NGINX_VERSIONS run
# the whole t/ suite, NGINX_SMOKE_VERSIONS packaging/smoke-test.sh; each version
# gets its own port, TEST_PORT + 10, + 20, ..., so no two runs share one.
NGINX_VERSIONS       ?= 1.31.4 1.30.4
NGINX_SMOKE_VERSIONS ?= 1.26.3
NGINX_TARBALLS       ?= $(abspath $(CURDIR)/../shared/vendor/nginx)
NGINX_CONFIGURE      := --with-compat --with-threads --with-http_ssl_module --with-http_v2_module \
                        --with-http_realip_module --with-stream --with-stream_ssl_preread_module --add-dynamic-module=$(CURDIR)

.PHONY: test-nginx-hup test-matrix test-suites
nginx-%:
	@set -e; dir=build/nginx-$*; mkdir -p build; \
	if [ ! -x $$dir/configure ]; then \
	  tarball=$(NGINX_TARBALLS)/nginx-$*.tar.gz; \
	  if [ ! -f $$tarball ]; then tarball=build/nginx-$*.tar.gz; \
	    curl -fsSL -o $$tarball https://nginx.org/download/nginx-$*.tar.gz; fi; \
	  tar -xzf $$tarball -C build; fi; \
	if [ "$$(cat $$dir/.configured 2>/dev/null)" != "$(NGINX_CONFIGURE)" ]; then \
	  echo "configuring nginx $* in $$dir"; \
	  (cd $$dir && ./configure $(NGINX_CONFIGURE)) > $$dir/configure.log 2>&1 || \
	    { tail -20 $$dir/configure.log; exit 1; }; \
	  printf '%s' "$(NGINX_CONFIGURE)" > $$dir/.configured; fi; \
	start=$$(date +%s); \
	$(MAKE) --no-print-directory -C $$dir -f objs/Makefile binary modules > $$dir/make.log 2>&1 || \
	  { tail -30 $$dir/make.log; exit 1; }; \
	echo "nginx $*: $$dir/objs/nginx and the module, made in $$(($$(date +%s) - start)) s"

test-matrix: $(addprefix nginx-,$(NGINX_VERSIONS) $(NGINX_SMOKE_VERSIONS))
	@[ -n "$(PROVE)" ] || $(NEED_TEST_NGINX)
	@i=0; failed=""; for v in $(NGINX_VERSIONS) $(NGINX_SMOKE_VERSIONS); do \
	  i=$$((i + 1)); port=$$(($(TEST_PORT) + 10 * i)); objs=$(CURDIR)/build/nginx-$$v/objs; \
	  start=$$(date +%s); \
	  case " $(NGINX_VERSIONS) " in \
	  *" $$v "*) rm -rf t/servroot-$$v; \
	    echo "t/ on nginx $$v (port $$port)"; \
	    TEST_NGINX_BINARY=$$objs/nginx TEST_NGINX_MODULE=$$objs/ngx_http_shared_map_module.so \
	    TEST_NGINX_SERVER_PORT=$$port TEST_NGINX_SERVROOT=$(CURDIR)/t/servroot-$$v \
	      $(PROVE) -r t/ || failed="$$failed $$v";; \
	  *) timeout 60 packaging/smoke-test.sh $$objs/nginx $$objs/ngx_http_shared_map_module.so $$port \
	      || failed="$$failed $$v";; \
	  esac; \
	  echo "nginx $$v: done in $$(($$(date +%s) - start)) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-matrix: failed on nginx$$failed"; exit 1; fi

# What `make test` runs of t/: the smoke test on NGINX_SMOKE_VERSIONS, then the
# whole suite on the vendored 1.28 (in its default and its HUP mode) and on each
# of NGINX_VERSIONS, SUITE_JOBS suites at a time (t/run-suites.sh), each on its
# own port 300 apart: one after another they take over 40 minutes, two at a
# time about half. The same runs one at a time: test-nginx, test-nginx-hup,
# test-matrix.
SUITE_JOBS ?= 2
test-suites: build $(addprefix nginx-,$(NGINX_VERSIONS) $(NGINX_SMOKE_VERSIONS))
	@[ -n "$(PROVE)" ] || $(NEED_TEST_NGINX)
	@for v in $(NGINX_SMOKE_VERSIONS); do objs=$(CURDIR)/build/nginx-$$v/objs; \
	  timeout 60 packaging/smoke-test.sh $$objs/nginx $$objs/ngx_http_shared_map_module.so $(TEST_PORT) || exit 1; \
	  echo "nginx $$v: smoke test passed"; done
	@specs="1.28:$(CURDIR)/$(NGINX):$(CURDIR)/$(MODULE):$(TEST_PORT):normal"; i=0; \
	for v in $(NGINX_VERSIONS); do i=$$((i + 1)); objs=$(CURDIR)/build/nginx-$$v/objs; \
	  specs="$$specs $$v:$$objs/nginx:$$objs/ngx_http_shared_map_module.so:$$(($(TEST_PORT) + 300 * i)):normal"; done; \
	specs="$$specs 1.28-hup:$(CURDIR)/$(NGINX):$(CURDIR)/$(MODULE):$$(($(TEST_PORT) + 300 * (i + 1))):hup"; \
	PROVE="$(PROVE)" t/run-suites.sh $(SUITE_JOBS) $$specs

# The t/ files that exercise the module's code paths, under valgrind's memcheck
# (Test::Nginx's TEST_NGINX_USE_VALGRIND, given valgrind's options). Test::Nginx
# fails nothing for valgrind's reports, and nginx would send them to each
# block's error log, so valgrind writes one file per process under
# build/valgrind/, and t/valgrind-errors.pl fails the run for a report whose
# stack passes through the module (others are counted as notes). It runs in
# HUP mode: in its plain valgrind mode Test::Nginx stops nginx after every
# block, so a block continuing the previous one ("...") finds no nginx.
# About 30 s per block under valgrind; VALGRIND_TESTS=t/ runs everything.
VALGRIND_TESTS ?= t/002-counting.t t/101-api-rw.t t/102-api-incr.t t/103-api-list.t t/106-api-errors.t \
                  t/109-hostile.t t/201-session-flow.t t/302-eviction.t t/303-persistence.t t/306-state-paths.t \
                  t/501-stream-counting.t
test-valgrind: build
	@command -v valgrind >/dev/null || { echo "test-valgrind needs valgrind (apt-get install valgrind)"; exit 1; }
	@[ -n "$(PROVE)" ] || $(NEED_TEST_NGINX)
	@rm -rf build/valgrind t/servroot-valgrind; mkdir -p build/valgrind
	TEST_NGINX_USE_VALGRIND="--tool=memcheck --num-callers=100 --log-file=$(CURDIR)/build/valgrind/%p.log" \
	TEST_NGINX_USE_HUP=1 TEST_NGINX_SLEEP=3 TEST_NGINX_BINARY=$(CURDIR)/$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) \
	TEST_NGINX_SERVER_PORT=$(TEST_PORT) TEST_NGINX_SERVROOT=$(CURDIR)/t/servroot-valgrind \
	  $(PROVE) $(VALGRIND_TESTS); rc=$$?; \
	  perl t/valgrind-errors.pl build/valgrind/*.log && exit $$rc

bench: build
	$(CARGO) bench -p shared-map-engine
	-$(MAKE) --no-print-directory build-debian
	bench/instructions.sh
	bench/nginx-bench.sh
	bench/flood.sh
	bench/p99.sh
	bench/redis-bench.sh

clean:
	$(CARGO) clean
	rm -rf $(OBJS) build t/servroot

# The same module built against Debian's nginx 1.22 (packages nginx-core nginx-dev),
# so that it loads into /usr/sbin/nginx next to libnginx-mod-http-lua. It is built
# the way nginx users build modules: nginx's own ./configure --add-dynamic-module
# with the repository's `config` and `make modules`, over Debian's nginx source
# (/usr/share/nginx/src) configured with `nginx -V`'s arguments, by the script that
# docker/Dockerfile runs for the official image.
DEBIAN_MODULE := $(OBJS)/debian/ngx_http_shared_map_module.so
HAVE_DEBIAN_NGINX = [ -d /usr/share/nginx/src ] && [ -x /usr/sbin/nginx ]
SKIP_DEBIAN = echo "$@: skipped: Debian's nginx-dev is not installed (apt-get install nginx-core nginx-dev)"

.PHONY: build-debian test-debian test-debian-suite smoke-debian deb test-deb
# Against Debian's nginx 1.22, with the module built for it by nginx's build: a
# counting smoke test, then the .deb installed, used and removed. Skipped (with a
# note) where nginx-dev is not installed. `make test` runs this; the whole t/
# suite against Debian's nginx (test-debian-suite, about 10 minutes) is left out
# of it to keep CI within its time, as the suite runs on four other versions.
test-debian:
	@if $(HAVE_DEBIAN_NGINX); then \
	  $(MAKE) --no-print-directory smoke-debian && \
	  $(MAKE) --no-print-directory test-deb; \
	else $(SKIP_DEBIAN); fi

# The t/ suite against Debian's nginx 1.22 and the module built for it.
test-debian-suite:
	@[ -n "$(PROVE)" ] || $(NEED_TEST_NGINX)
	@if $(HAVE_DEBIAN_NGINX); then \
	  $(MAKE) --no-print-directory build-debian && \
	  TEST_NGINX_BINARY=/usr/sbin/nginx TEST_NGINX_MODULE=$(CURDIR)/$(DEBIAN_MODULE) \
	  TEST_NGINX_SERVER_PORT=$(TEST_PORT) TEST_NGINX_SERVROOT=$(CURDIR)/t/servroot-debian \
	    $(PROVE) -r t/; \
	else $(SKIP_DEBIAN); fi

build-debian:
	@$(HAVE_DEBIAN_NGINX) || { echo "install Debian's nginx first: apt-get install nginx-core nginx-dev"; exit 1; }
	timeout 900 docker/build-module.sh --nginx /usr/sbin/nginx --source /usr/share/nginx/src \
	  --out $(OBJS)/debian --work build/debian

# The module from nginx's build loads into /usr/sbin/nginx and counts.
smoke-debian: build-debian
	timeout 60 packaging/smoke-test.sh /usr/sbin/nginx $(CURDIR)/$(DEBIAN_MODULE) $(TEST_PORT)

# libnginx-mod-http-shared-map for the installed Debian nginx, in objs/deb/.
deb: build-debian
	packaging/deb/build-deb.sh $(DEBIAN_MODULE) $(OBJS)/deb

# Installs the .deb (as root), checks that Debian's nginx configuration loads it
# (`nginx -t` with /etc/nginx/nginx.conf), counts with it in a separate nginx,
# then removes and purges it, checking that nginx no longer loads it.
test-deb: deb
	@[ "$$(id -u)" = 0 ] || { echo "$@: skipped: dpkg -i needs root"; exit 0; }; \
	set -e; deb=$$(ls -t $(OBJS)/deb/libnginx-mod-http-shared-map_*.deb | head -1); \
	trap 'dpkg -P libnginx-mod-http-shared-map >/dev/null 2>&1 || true' EXIT; \
	timeout 120 dpkg -i $$deb; \
	test "$$(readlink /etc/nginx/modules-enabled/50-mod-http-shared-map.conf)" = \
	     /usr/share/nginx/modules-available/mod-http-shared-map.conf; \
	/usr/sbin/nginx -t; \
	/usr/sbin/nginx -T 2>/dev/null | grep -qx 'load_module modules/ngx_http_shared_map_module.so;'; \
	timeout 60 packaging/smoke-test.sh /usr/sbin/nginx /usr/lib/nginx/modules/ngx_http_shared_map_module.so $(TEST_PORT); \
	timeout 120 dpkg -r libnginx-mod-http-shared-map; \
	test ! -e /usr/lib/nginx/modules/ngx_http_shared_map_module.so; \
	test ! -e /etc/nginx/modules-enabled/50-mod-http-shared-map.conf; \
	/usr/sbin/nginx -t; \
	timeout 120 dpkg -P libnginx-mod-http-shared-map; \
	test ! -L /etc/nginx/modules-enabled/50-mod-http-shared-map.conf.removed; \
	echo "test-deb: $$deb installed, enabled, loaded by nginx -t, counted, removed and purged"
# The t/ suite inside docker/Dockerfile.test (under Test::Nginx), then the image
# docker/Dockerfile makes from the nginx image, checked to count. docker where a
# Docker engine answers, else podman and buildah. DOCKER_BASES=official|local|auto
# chooses the base images (auto: the official ones if they can be pulled, else
# made here); DOCKER_TESTS the t/ files run (default all). See docker/test-docker.sh.
DOCKER_TESTS ?= t/
.PHONY: test-docker
test-docker:
	DOCKER_TESTS='$(DOCKER_TESTS)' TEST_PORT=$(TEST_PORT) docker/test-docker.sh
