/*
 * tls_files.h - the certificate and key files under STATE/tls/ that the routes file names.
 *
 * The proxy may load the routes file at any moment, so the files it names must be complete on
 * disk before it appears, and a file may go only once no routes file in place names it. The
 * agent therefore calls, in this order: tls_files_write, routes_write, tls_files_prune (which
 * routes_publish does).
 *
 * Each file is named by the SHA-256 of its content ("tls/<64 hex>.crt" or ".key"), so a name
 * never changes meaning: a file is written once and later only removed, never rewritten, and a
 * routes file can never name a half-updated certificate. Private keys live here: the folder is
 * 0700 and the files 0600 whatever the umask, each written to a temp file, fsync'd and renamed.
 * Contents are never logged, only counts.
 */
#ifndef GATEHOUSE_TLS_FILES_H
#define GATEHOUSE_TLS_FILES_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#define TLS_DIR_NAME "tls"
#define TLS_FILE_KEY_MAX (sizeof TLS_DIR_NAME "/" + 64 + 4)   /* "tls/<64 hex>.crt" + NUL */

/* The name a file with this content gets: "tls/<sha256 hex>." + ext ("crt" or "key"). Pure, so
 * translate can name the files it hands over without touching the disk. */
void tls_files_name(const void *data, size_t len, const char *ext, char out[TLS_FILE_KEY_MAX]);

/* files: a json object, "tls/<sha256 hex>.crt|.key" -> the file's content (a string that may
 * hold any bytes: its length is json_string_length). Names that do not follow that pattern or
 * do not match their content's hash are refused. Files already on disk with that content are
 * left alone. Creates STATE/tls (0700; STATE must exist) when there is something to write.
 * Returns the number of files written (0: nothing changed), or -1 with err saying why (some
 * files may already be in place, which is harmless: no routes file names them yet). */
int tls_files_write(const char *state_dir, const json_t *files, char *err, size_t errlen);

/* Removes the files of ours under STATE/tls (hash-named, and temp files we left after a crash)
 * whose name "tls/<name>" is not a key of keep. Call it only once a routes file naming no
 * other files is in place. Files not named like ours are left alone. Returns the number
 * removed, or -1 with err saying why. */
int tls_files_prune(const char *state_dir, const json_t *keep, char *err, size_t errlen);

/* The user the files are for. An agent running as root writes them for the proxy's user (its
 * proxy.user), so the proxy can read its keys after dropping privileges while nobody else can:
 * folder and files are then owned by that user, still 0700/0600. Not called: the agent's own. */
void tls_files_set_reader(uid_t uid, gid_t gid);

/* Overwrites the contents (private keys) with zeros, then frees the object. NULL is fine. */
void tls_files_free(json_t *files);

#endif
