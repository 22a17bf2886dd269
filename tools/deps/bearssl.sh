# tools/deps/bearssl.sh — BearSSL 0.6: TLS for the proxy and for the agent's libcurl.
# Debian's own libbearssl.a cannot be used: it is built against glibc's FORTIFY symbols.
# BearSSL has no install target; the static library and the public headers are copied.
SOURCE_PACKAGE=bearssl
UPSTREAM_VERSION=0.6

build_library() {
    fetch_source
    cd "$WORK"
    make -j"$JOBS" CC="$CC" LD="$CC" LDDLL="$CC" DLL=no TOOLS=no TESTS=no
    install_files "$PREFIX/lib" build/libbearssl.a
    install_files "$PREFIX/include" inc/*.h
}
