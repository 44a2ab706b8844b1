# The two commands: `make demo` and `make test`. Everything else is for developers and CI.
.PHONY: all deps demo test install bench fuzz check-sanitizers check-thread-safety check-nolockdep format clean \
	reference-check reference-fuzz kselftest

JOBS ?= $(shell nproc)
CMAKE_BUILD = cmake --build --preset $(1) -j $(JOBS)

# Configure a preset once; later runs reuse the build tree.
define configure
	@test -f build/$(1)/build.ninja || cmake --preset $(1) >/dev/null
endef

all: test

deps:
	@tools/ensure-deps.sh

build-%: deps
	$(call configure,$*)
	$(call CMAKE_BUILD,$*)

demo: build-release
	./build/release/tools/uiommufd/uiommufd demo

test: build-release
	ctest --preset release -j $(JOBS)

# Installs the release build: bin/uiommufd, lib/libuiommufd-preload.so, lib/libuiommufd.a, the headers,
# lib/pkgconfig/uiommufd.pc and lib/cmake/uiommufd (find_package(uiommufd) -> uiommufd::uiommufd).
PREFIX ?= /usr/local
install: build-release
	cmake --install build/release --prefix $(PREFIX)

# Figures are reported, not asserted: a MISS prints but does not fail. Builds only the benchmark binary of
# each preset; lockdep_compiled_out comes from the nolockdep one, the runtime's figures from a program run
# under the preload.
bench: deps
	$(call configure,release)
	$(call configure,nolockdep)
	$(call CMAKE_BUILD,release) --target uiommufd_bench uiommufd_runtime_bench uiommufd_shared_bench uiommufd uiommufd-preload
	$(call CMAKE_BUILD,nolockdep) --target uiommufd_bench
	./build/release/bench/uiommufd_bench
	./build/nolockdep/bench/uiommufd_bench
	./build/release/tools/uiommufd/uiommufd run -- ./build/release/bench/uiommufd_runtime_bench \
	  --benchmark_filter=-BM_TracedIoctlMapUnmap4k
	./build/release/tools/uiommufd/uiommufd trace -o /dev/null -- ./build/release/bench/uiommufd_runtime_bench \
	  --benchmark_filter=BM_TracedIoctlMapUnmap4k
	./build/release/tools/uiommufd/uiommufd run --shared -- ./build/release/bench/uiommufd_shared_bench

check-sanitizers: build-asan build-tsan
	ctest --preset asan -j $(JOBS)
	ctest --preset tsan -j $(JOBS)

# Clang's static lock analysis over the whole tree; warnings about locking are errors.
check-thread-safety: build-clang-tsa
	ctest --preset clang-tsa -j $(JOBS)

# The validator compiled out must still build and pass every test.
check-nolockdep: build-nolockdep
	ctest --preset nolockdep -j $(JOBS)

# libFuzzer over the ioctl dispatcher (Clang, ASan+UBSan) for FUZZ_SECONDS; any crash or leak fails.
# New inputs go to build/fuzz/corpus; the committed seeds in fuzz/corpus are only read.
FUZZ_SECONDS ?= 60
fuzz: deps
	@test -f build/fuzz/build.ninja || cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DUIOMMUFD_FUZZ=ON \
	  -DUIOMMUFD_SANITIZE=address,undefined -DUIOMMUFD_BUILD_TESTS=OFF -DUIOMMUFD_BUILD_BENCH=OFF >/dev/null
	cmake --build build/fuzz -j $(JOBS) --target uiommufd_ioctl_fuzzer
	@mkdir -p build/fuzz/corpus
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ./build/fuzz/fuzz/uiommufd_ioctl_fuzzer -max_total_time=$(FUZZ_SECONDS) -timeout=30 -rss_limit_mb=4096 -artifact_prefix=build/fuzz/ \
	  build/fuzz/corpus fuzz/corpus

# Not part of `make test`: the same programs on a real Linux kernel under QEMU and under `uiommufd run`,
# compared step by step (tools/reference/README.md). The kernel is built once into ~/.cache/uiommufd-ref.
# reference.py exits 1 on a disagreement (or a crash, timeout, kernel warning or taint) and 3 when there is
# no reference kernel (its source could not be fetched or it did not build). Both fail these targets unless
# REFERENCE_UNAVAILABLE_OK=1 (CI) turns the second into a loud notice: nothing was compared, nothing agreed.
SEEDS ?= 1000
REFERENCE = tools/reference/reference.py --uiommufd build/release/tools/uiommufd/uiommufd
define reference_run
	@rc=0; $(REFERENCE) $(1) || rc=$$?; \
	if [ $$rc -eq 3 ] && [ -n "$(REFERENCE_UNAVAILABLE_OK)" ]; then \
	  echo "!!! make $@: NO REFERENCE KERNEL - NOTHING WAS COMPARED WITH LINUX (not an agreement) !!!"; exit 0; \
	fi; exit $$rc
endef

# Both runtime modes against one kernel run: in-process and --shared (docs/shared.md).
reference-check: build-release
	$(call reference_run,--shared check)

reference-fuzz: build-release
	$(call reference_run,fuzz --seeds $(SEEDS))

# Not part of `make test` either: Linux's own iommufd selftests (tools/testing/selftests/iommu of the
# reference tree in ~/.cache/uiommufd-ref, built by reference-check) compiled unmodified and run under
# `uiommufd run`; prints a pass/FAIL/skip table and the totals. A measurement, not a gate: failing tests do
# not fail it. Exits 3 when no reference kernel tree is cached (a loud notice with REFERENCE_UNAVAILABLE_OK).
# KSELFTEST_HUGEPAGES raises nr_hugepages for the run as the reference VM has it (0 leaves the system
# alone); KSELFTEST_LINUX=1 adds Linux's verdict per test (one boot of the reference VM); KSELFTEST_ARGS go
# to the kselftest harness, e.g. KSELFTEST_ARGS="-f iommufd_device_pasid"; KSELFTEST_SHARED=1 runs them
# under `uiommufd run --shared`.
KSELFTEST_HUGEPAGES ?= 128
KSELFTEST_LINUX ?=
KSELFTEST_SHARED ?=
KSELFTEST_ARGS ?=
kselftest: build-release
	@rc=0; tools/reference/kselftest.sh --hugepages $(KSELFTEST_HUGEPAGES) $(if $(KSELFTEST_LINUX),--linux) \
	  $(if $(KSELFTEST_SHARED),--shared) \
	  -- $(KSELFTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 3 ] && [ -n "$(REFERENCE_UNAVAILABLE_OK)" ]; then \
	  echo "!!! make $@: NO REFERENCE KERNEL TREE - NOTHING WAS MEASURED !!!"; exit 0; \
	fi; exit $$rc

format:
	git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf build
