/*
 * reload.h - keeps the published route table in step with the routes file.
 *
 * reload_initial() runs once in main before the workers start; reload_start() then watches the
 * file's directory (inotify) from a thread of its own and reloads when the file is replaced.
 * Every load is logged and counted in /metrics; a file that fails validation never replaces
 * the table that is serving.
 */
#ifndef GATEHOUSE_RELOAD_H
#define GATEHOUSE_RELOAD_H

#include <stddef.h>

/* Publishes an empty table, then loads the routes file if it exists. Returns 0 if the file was
 * loaded, -1 if it is missing or was refused (the reason is logged; the empty table serves). */
int reload_initial(const char *routes_path);

/* Loads the file now and publishes it if valid. Returns 0 if published, -1 if refused. */
int reload_now(const char *routes_path);

/* Starts the watcher thread. Works when the directory does not exist yet (checked every
 * second). Returns 0, or -1 with a message in err. */
int reload_start(const char *routes_path, char *err, size_t errlen);

/* Asks the watcher to reload even without a change (SIGHUP). */
void reload_request(void);

/* Stops and joins the watcher thread. */
void reload_stop(void);

#endif
