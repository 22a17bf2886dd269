# tools/deps/jansson.sh — jansson 2.14: JSON from the Kubernetes API and for the admin endpoints.
# The orig tarball has no ./configure (it would need autotools); its CMake build needs nothing more.
SOURCE_PACKAGE=jansson
UPSTREAM_VERSION=2.14

build_library() {
    fetch_source
    cmake -S "$WORK" -B "$WORK/_build" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release \
        -DJANSSON_BUILD_SHARED_LIBS=OFF -DJANSSON_BUILD_DOCS=OFF -DJANSSON_EXAMPLES=OFF \
        -DJANSSON_WITHOUT_TESTS=ON -DCMAKE_INSTALL_PREFIX="$PREFIX"
    cmake --build "$WORK/_build" -j "$JOBS"
    install_files "$PREFIX/lib" "$WORK/_build/lib/libjansson.a"
    install_files "$PREFIX/include" "$WORK/_build/include/jansson.h" \
        "$WORK/_build/include/jansson_config.h"
}
