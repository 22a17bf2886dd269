/*
 * routes_writer.h - puts a routes document on disk as STATE/routes.yaml, atomically.
 *
 * The proxy may read the file at any moment and the node may lose power at any moment, so the
 * file is never written in place: a temp file beside it (O_EXCL, mode 0644 whatever the umask,
 * since the proxy may run as another user) is written, fsync'd, renamed over routes.yaml, and the
 * folder is fsync'd so the rename itself survives a crash. When the bytes would not change,
 * nothing is written: the proxy then sees no event and reloads nothing. Certificates and keys
 * go beside it under STATE/tls/ (tls_files.h); routes_publish writes both in the right order.
 */
#ifndef GATEHOUSE_ROUTES_WRITER_H
#define GATEHOUSE_ROUTES_WRITER_H

#include <jansson.h>
#include <stddef.h>

#define ROUTES_FILE_NAME "routes.yaml"

enum routes_write_result { ROUTES_FAILED = -1, ROUTES_UNCHANGED = 0, ROUTES_WRITTEN = 1 };

/* Serialises routes (yaml_emit) into STATE/routes.yaml, creating state_dir (mode 0755, parents
 * too) when missing. Logs "routes written: N hosts, M routes" when it writes. On failure the
 * previous file is untouched and err says why. */
enum routes_write_result routes_write(const char *state_dir, const json_t *routes,
                                      char *err, size_t errlen);

/* The routes document and the TLS files it names (tls_files.h; may be NULL), in the order the
 * proxy needs: the files first (a failure there leaves the previous routes file in place, since
 * the new one would name files that are not there), then routes.yaml, then - only once a routes
 * file is in place, written now or found unchanged - the files it no longer names are removed. */
enum routes_write_result routes_publish(const char *state_dir, const json_t *routes,
                                        const json_t *tls_files, char *err, size_t errlen);

#endif
