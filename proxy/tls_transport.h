/*
 * tls_transport.h - one client connection's TLS: a BearSSL server engine, its record buffers and
 * the non-blocking record I/O between the engine and the socket.
 *
 * conn.c sees plaintext only: tls_transport_read() and tls_transport_writev() behave like
 * read() and writev() on a non-blocking socket (EAGAIN when they would block), while the
 * transport moves records both ways underneath. A TLS read may need the socket writable
 * (handshake messages, alerts) and a write may need it readable (a handshake not finished), so
 * the transport keeps the socket's own readiness and, on any epoll event, the caller simply
 * retries both directions.
 *
 * The engine accepts TLS 1.2 only, ECDHE suites only (AES-GCM first, then ChaCha20-Poly1305;
 * no CBC, no RSA key exchange), ALPN "http/1.1". The certificate is chosen from the SNI name
 * through the route table the connection was accepted with; the transport holds a reference to
 * that table until the handshake is over, so the certificate memory stays valid across reloads.
 *
 * Memory: the context and its buffers are one allocation, tls_transport_size() bytes (31,208
 * on x86_64: engine context about 4,100, input buffer 16,709 for one full record as TLS requires,
 * output buffer 8,277 for records of TLS_TRANSPORT_OUT_PLAINTEXT bytes, 2 KiB read-ahead). It
 * lives as long as the connection; the HTTP buffers are separate (conn.c) and are held only while
 * a request is in flight. Transports are recycled through a per-worker free list (no locks), and
 * a recycled engine keeps its configuration: only the handshake state is reset.
 */
#ifndef GATEHOUSE_TLS_TRANSPORT_H
#define GATEHOUSE_TLS_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define TLS_TRANSPORT_OUT_PLAINTEXT 8192

struct route_table;
struct tls_transport;

/* A new server-side TLS connection on fd (non-blocking, already accepted), choosing its
 * certificate from table (referenced until the handshake ends; may be NULL: default
 * certificate). Reuses an object from *free_list when there is one. NULL when out of memory. */
struct tls_transport *tls_transport_open(struct tls_transport **free_list, int fd,
                                         struct route_table *table);

/* Sends close_notify if it can without blocking, drops the table reference, and puts t on the
 * free list. Does not close the fd. */
void tls_transport_close(struct tls_transport **free_list, struct tls_transport *t);

/* Frees every object on the free list (worker exit). */
void tls_transport_free_all(struct tls_transport **free_list);

/* epoll reported the socket readable and/or writable. */
void tls_transport_socket_ready(struct tls_transport *t, int readable, int writable);

/* Plaintext from the client, like read(2): > 0 bytes, 0 at the end (close_notify, or the
 * peer closed the TCP connection), -1 with errno EAGAIN (would block) or ECONNRESET/EPROTO. */
ssize_t tls_transport_read(struct tls_transport *t, void *buf, size_t len);

/* Plaintext to the client, like writev(2): the number of bytes the engine took (they are
 * encrypted and sent as far as the socket allows), or -1 with errno EAGAIN or EPIPE. */
ssize_t tls_transport_writev(struct tls_transport *t, const struct iovec *iov, int iovcnt);

/* Pushes encrypted output to the socket: 1 when nothing is left to send, 0 when the socket
 * would block, -1 when the connection failed. */
int tls_transport_flush(struct tls_transport *t);

/* Begins the TLS close (close_notify); the caller may keep reading until the peer answers. */
void tls_transport_shutdown(struct tls_transport *t);

/* Bytes one TLS connection costs: context + input and output buffers. */
size_t tls_transport_size(void);

#endif
