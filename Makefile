# Gatehouse build.
#   make            static musl binaries: build/bin/gatehouse-proxy, build/bin/gatehouse-agent
#   make test       unit tests (ASan+UBSan), fuzz smoke run, integration tests (pytest), which
#                   build the image and boot it under qemu
#   make bench      gatehouse-proxy beside nginx, HAProxy and h2o (HTTP, TLS); DNS sync into BIND
#                   (BENCH_ONLY=http|tls limits bench/run.py to one part)
#   make run        demo: the appliance image under qemu serving demo/manifests on 127.0.0.1:8080
#   make run-host   the same demo without a VM (backends + agent + proxy on this machine)
#   make image      kernel + initramfs + OCI layout (build/image, build/oci)
#   make disk       a bootable raw disk (UEFI, A/B slots) from that image: build/disk/gatehouse.img
# Third-party libraries are built from Debian source packages into build/deps (see tools/deps/).

.DEFAULT_GOAL := all

MUSL_CC   ?= musl-gcc
HOST_CC   ?= cc
FUZZ_CC   ?= clang
PYTHON    ?= /usr/bin/python3
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo 0.0.0)

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CSTD      := -std=c11 -D_GNU_SOURCE
DEPS      := build/deps/musl
KHEADERS  := build/deps/kheaders
REL_CFLAGS := $(CSTD) $(WARN) -O2 -g -I$(DEPS)/include -idirafter $(KHEADERS) -Ilib
ASAN_CFLAGS := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined -Ilib
# The version reaches the two main.c files and the API client (its User-Agent); their objects
# are rebuilt when it changes.
VERSION_STAMP := build/version.stamp
$(shell mkdir -p build; [ "$$(cat $(VERSION_STAMP) 2>/dev/null)" = "$(VERSION)" ] || echo "$(VERSION)" > $(VERSION_STAMP))
build/musl/proxy/main.o build/musl/agent/main.o build/musl/agent/kube_client.o build/musl/agent/upgrade.o: $(VERSION_STAMP)
build/musl/proxy/main.o build/musl/agent/main.o build/musl/agent/kube_client.o build/musl/agent/upgrade.o: REL_CFLAGS += -DGATEHOUSE_VERSION='"$(VERSION)"'

LIB_SRC   := $(wildcard lib/*.c)
PROXY_SRC := $(wildcard proxy/*.c)
AGENT_SRC := $(wildcard agent/*.c)
ROOTFS_SRC := $(wildcard rootfs/*.c)
LIB_HDR   := $(wildcard lib/*.h)

DEP_LIBS_PROXY := -lyaml -ljansson -lbearssl -lpthread
DEP_LIBS_AGENT := -lcurl -lbearssl -lyaml -ljansson -lz -lpthread
DEP_STAMPS := $(DEPS)/.built-bearssl $(DEPS)/.built-libyaml $(DEPS)/.built-jansson $(DEPS)/.built-curl \
              $(DEPS)/.built-zlib

.PHONY: all deps test unit fuzz integration bench run run-host image disk clean distclean
all: build/bin/gatehouse-proxy build/bin/gatehouse-agent build/bin/gatehouse-init

# ---- third-party libraries (cached; rebuilt when their recipe changes) ----
deps: $(DEP_STAMPS)
$(DEPS)/.built-%: tools/deps/%.sh tools/deps/common.sh
	@./tools/install-deps build
	tools/deps/build $*
$(DEPS)/.built-curl: $(DEPS)/.built-bearssl
$(KHEADERS)/.stamp:
	mkdir -p $(KHEADERS)
	ln -sfn /usr/include/linux $(KHEADERS)/linux
	ln -sfn /usr/include/asm-generic $(KHEADERS)/asm-generic
	ln -sfn /usr/include/x86_64-linux-gnu/asm $(KHEADERS)/asm
	touch $@

# ---- release binaries: static, musl ----
build/musl/%.o: %.c $(LIB_HDR) $(wildcard proxy/*.h agent/*.h rootfs/*.h) $(DEP_STAMPS) $(KHEADERS)/.stamp
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(REL_CFLAGS) -c $< -o $@

build/bin/gatehouse-proxy: $(PROXY_SRC:%.c=build/musl/%.o) $(LIB_SRC:%.c=build/musl/%.o)
	@mkdir -p $(dir $@)
	$(MUSL_CC) -static -o $@ $^ -L$(DEPS)/lib $(DEP_LIBS_PROXY)

build/bin/gatehouse-agent: $(AGENT_SRC:%.c=build/musl/%.o) $(LIB_SRC:%.c=build/musl/%.o)
	@mkdir -p $(dir $@)
	$(MUSL_CC) -static -o $@ $^ -L$(DEPS)/lib $(DEP_LIBS_AGENT)

# The image's stage-1 init (rootfs/): only log, yaml_json, base64 and file_read from lib/ (no TLS
# in PID 1).
build/bin/gatehouse-init: $(ROOTFS_SRC:%.c=build/musl/%.o) build/musl/lib/log.o build/musl/lib/yaml_json.o \
    build/musl/lib/base64.o build/musl/lib/file_read.o
	@mkdir -p $(dir $@)
	$(MUSL_CC) -static -o $@ $^ -L$(DEPS)/lib -lyaml -ljansson

# ---- unit tests: system compiler, ASan+UBSan, Debian's libyaml/jansson ----
# Each tests/unit/test_*.c is a program linked against every non-main object.
build/asan/%.o: %.c $(LIB_HDR) $(wildcard proxy/*.h agent/*.h rootfs/*.h)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(ASAN_CFLAGS) -Iproxy -Iagent -c $< -o $@

ASAN_LIB   := build/asan/libgatehouse-test.a
ASAN_OBJS  := $(patsubst %.c,build/asan/%.o,$(LIB_SRC) $(filter-out proxy/main.c,$(PROXY_SRC)) $(filter-out agent/main.c,$(AGENT_SRC)) $(filter-out rootfs/init.c,$(ROOTFS_SRC)))
$(ASAN_LIB): $(ASAN_OBJS)
	rm -f $@ && ar rcs $@ $^

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=build/asan/tests/%)
build/asan/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(ASAN_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(ASAN_CFLAGS) -Iproxy -Iagent -Irootfs -Itests/unit $< -o $@ $(ASAN_LIB) -lcurl -lyaml -ljansson -lbearssl -lz -lpthread

unit: $(UNIT_BINS)
	@./tools/install-deps test
	@tools/run-unit-tests $(UNIT_BINS)

# ---- fuzzing: libFuzzer, bounded run in make test ----
FUZZ_SECONDS ?= 20
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
# Each target names the sources it exercises; seeds live in tests/fuzz/seeds/TARGET/.
build/fuzz/fuzz_http1_parser: proxy/http1_parser.c proxy/http1_parser.h
build/fuzz/fuzz_dns_wire: agent/dns_wire.c agent/dns_wire.h lib/log.c
build/fuzz/fuzz_translate: agent/translate.c agent/k8s_object.c agent/ingress_validate.c \
    agent/tls_files.c agent/file_io.c lib/yaml_json.c lib/log.c lib/tls_material.c \
    proxy/route_table.c proxy/tls_store.c proxy/tls_selfsigned.c $(LIB_HDR) $(wildcard agent/*.h proxy/*.h)
build/fuzz/fuzz_translate: FUZZ_LIBS := -lyaml -ljansson -lbearssl -lpthread
build/fuzz/fuzz_watch_stream: agent/kube_watch.c agent/kube_status.c agent/kube_client.c \
    agent/kube_credentials.c agent/kubeconfig.c agent/k8s_object.c lib/log.c lib/yaml_json.c \
    lib/tls_material.c lib/base64.c lib/file_read.c $(LIB_HDR) $(wildcard agent/*.h)
build/fuzz/fuzz_watch_stream: FUZZ_LIBS := -lcurl -lyaml -ljansson -lbearssl -lpthread
build/fuzz/fuzz_cloud_config: rootfs/cloud_config.c lib/log.c lib/yaml_json.c lib/base64.c $(LIB_HDR) \
    $(wildcard rootfs/*.h)
build/fuzz/fuzz_cloud_config: FUZZ_LIBS := -lyaml -ljansson
build/fuzz/fuzz_image_layer: agent/image_layer.c agent/file_io.c lib/log.c $(LIB_HDR) agent/image_layer.h
build/fuzz/fuzz_image_layer: FUZZ_LIBS := -lz
build/fuzz/%: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy -Iagent -Irootfs -Ilib $(filter %.c,$^) -o $@ $(FUZZ_LIBS)
fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	  mkdir -p build/fuzz/corpus-$$(basename $$f); \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 build/fuzz/corpus-$$(basename $$f) tests/fuzz/seeds/$$(basename $$f) 2>build/fuzz/$$(basename $$f).log \
	    && echo "fuzz: $$(basename $$f) ok: $$(grep -o 'Done [0-9]* runs' build/fuzz/$$(basename $$f).log) in $(FUZZ_SECONDS) s, no crash" \
	    || { tail -40 build/fuzz/$$(basename $$f).log; echo "fuzz: $$(basename $$f) FAILED"; exit 1; }; \
	done

# ---- integration tests: the real static binaries on loopback ----
integration: all image
	@./tools/install-deps test
	GATEHOUSE_IMAGE_TESTS=1 $(PYTHON) -m pytest -q tests/integration

test:
	@./tools/install-deps test
	@$(MAKE) --no-print-directory all image
	@GATEHOUSE_IMAGE_TESTS=1 tools/run-all-tests

bench: all
	@./tools/install-deps bench
	$(PYTHON) bench/run.py
	$(PYTHON) bench/dns_bench.py
	$(PYTHON) bench/kube_bench.py

# The demo: the appliance under qemu (TCG), or the same programs straight on this machine.
run: image
	@./tools/install-deps run
	tools/demo-qemu

run-host: all
	@./tools/install-deps run
	tools/demo

# The appliance image: kernel + initramfs + OCI layout under build/ (booted by make run and by
# tests/integration/test_image.py; tools/image/boot-check is the same check by hand).
image: all
	@./tools/install-deps image
	VERSION=$(VERSION) SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
	  REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) tools/image/build

# A raw disk for a machine or a VM (docs/upgrades.md): GPT with an EFI system partition
# (systemd-boot, slots A and B, A holding this image), a cidata volume and GATEHOUSE_DATA.
# DISK_USER_DATA=FILE puts a cloud-config on the cidata volume. No root, no loop devices.
DISK_OUT ?= build/disk/gatehouse.img
DISK_SIZE ?= 1024
disk: image
	@./tools/install-deps disk
	@mkdir -p $(dir $(DISK_OUT))
	$(PYTHON) tools/image/mkdisk --oci build/oci --out $(DISK_OUT) --size $(DISK_SIZE) \
	  $(if $(DISK_USER_DATA),--user-data $(DISK_USER_DATA))

clean:
	rm -rf build/musl build/asan build/fuzz build/bin
distclean:
	rm -rf build
