# tools/deps/curl.sh — libcurl 7.88.1 over BearSSL: the agent's client for the Kubernetes API.
#
# Debian's last two patches (99_nss, 90_gnutls) rename the library for its other TLS flavours;
# they are reversed so the build makes a plain libcurl.a. Debian's security fixes stay applied.
# Only HTTP(S) is compiled in, with no compression or IDN libraries: the agent needs nothing more,
# and each library left out is one less thing to build from source. libtool drops -static, so
# -all-static is passed at make time. Needs bearssl installed first (the Makefile orders it).
#
# One fix of ours (the patch below): in 7.88.1 the BearSSL handshake step returns "again"
# without saying whether it waits to read or to write, so the multi loop polls no socket and
# sleeps its whole timeout (~1 s, or 200 ms) before each further handshake step: that was the
# 1.2 s stall seen in every fresh TLS connection. Setting ssl_connect_2_reading/_writing, as the
# other TLS backends do, makes it wait on the socket instead.
SOURCE_PACKAGE=curl
UPSTREAM_VERSION=7.88.1

build_library() {
    fetch_source
    cd "$WORK"
    for p in 99_nss 90_gnutls; do
        patch -R -p1 < "debian/patches/$p.patch"
    done
    patch -p1 <<'PATCH'
--- a/lib/vtls/bearssl.c
+++ b/lib/vtls/bearssl.c
@@ -826,8 +826,13 @@
   DEBUGASSERT(backend);
 
   ret = bearssl_run_until(cf, data, BR_SSL_SENDAPP | BR_SSL_RECVAPP);
-  if(ret == CURLE_AGAIN)
+  if(ret == CURLE_AGAIN) {
+    /* Gatehouse: say which way the handshake waits, else the socket is not polled */
+    connssl->connecting_state =
+      (br_ssl_engine_current_state(&backend->ctx.eng) & BR_SSL_SENDREC) ?
+      ssl_connect_2_writing : ssl_connect_2_reading;
     return CURLE_OK;
+  }
   if(ret == CURLE_OK) {
     if(br_ssl_engine_current_state(&backend->ctx.eng) == BR_SSL_CLOSED) {
       failf(data, "SSL: connection closed during handshake");
PATCH
    [ -f "$PREFIX/lib/libbearssl.a" ] || { echo "curl needs bearssl: run tools/deps/build bearssl" >&2; return 1; }
    ./configure --host=x86_64-linux-musl CC="$CC" --prefix="$PREFIX" \
        --disable-shared --enable-static --disable-manual --disable-docs \
        --with-bearssl="$PREFIX" --without-openssl --without-gnutls --without-nss \
        --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt --without-ca-path \
        --disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp --disable-dict \
        --disable-telnet --disable-tftp --disable-pop3 --disable-imap --disable-smb \
        --disable-smtp --disable-gopher --disable-mqtt --disable-ntlm --disable-ntlm-wb \
        --disable-kerberos-auth --disable-negotiate-auth --disable-aws --disable-unix-sockets \
        --without-zlib --without-brotli --without-zstd --without-libpsl --without-libidn2 \
        --without-nghttp2 --without-ngtcp2 --without-nghttp3 --without-libssh2 --without-libssh \
        --without-librtmp --without-gssapi --without-libgsasl
    make -j"$JOBS" -C lib LDFLAGS=-all-static
    make -C lib install
    make -C include install
}
