# tools/deps/zlib.sh — zlib 1.2.13: gunzips the appliance image layer the agent pulls.
# zlib's own ./configure (not autoconf) knows --static; only the library is built, not the
# examples, and the static library and its two public headers are copied.
# Debian repacks the upstream tarball (".dfsg": parts of contrib/ removed), hence the suffix
# in the version.
SOURCE_PACKAGE=zlib
UPSTREAM_VERSION=1.2.13.dfsg

build_library() {
    fetch_source
    cd "$WORK"
    ./configure --static --prefix="$PREFIX"
    make -j"$JOBS" libz.a
    install_files "$PREFIX/lib" libz.a
    install_files "$PREFIX/include" zlib.h zconf.h
}
