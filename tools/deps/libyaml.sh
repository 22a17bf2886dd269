# tools/deps/libyaml.sh — libyaml 0.2.5: the routes file, manifests and the node config.
# The orig tarball has no ./configure; its CMake build makes a static library directly.
SOURCE_PACKAGE=libyaml
UPSTREAM_VERSION=0.2.5

build_library() {
    fetch_source
    cmake -S "$WORK" -B "$WORK/_build" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$PREFIX"
    cmake --build "$WORK/_build" -j "$JOBS"
    install_files "$PREFIX/lib" "$WORK/_build/libyaml.a"
    install_files "$PREFIX/include" "$WORK/include/yaml.h"
}
