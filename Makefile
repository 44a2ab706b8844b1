# The two commands: `make demo` and `make test`. Everything else is for developers and CI.
.PHONY: all deps demo test bench check-sanitizers check-thread-safety check-nolockdep format clean

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

# Figures are reported, not asserted: a MISS prints but does not fail. Builds only the benchmark binary of
# each preset; lockdep_compiled_out comes from the nolockdep one.
bench: deps
	$(call configure,release)
	$(call configure,nolockdep)
	$(call CMAKE_BUILD,release) --target uiommufd_bench
	$(call CMAKE_BUILD,nolockdep) --target uiommufd_bench
	./build/release/bench/uiommufd_bench
	./build/nolockdep/bench/uiommufd_bench

check-sanitizers: build-asan build-tsan
	ctest --preset asan -j $(JOBS)
	ctest --preset tsan -j $(JOBS)

# Clang's static lock analysis over the whole tree; warnings about locking are errors.
check-thread-safety: build-clang-tsa
	ctest --preset clang-tsa -j $(JOBS)

# The validator compiled out must still build and pass every test.
check-nolockdep: build-nolockdep
	ctest --preset nolockdep -j $(JOBS)

format:
	git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf build
