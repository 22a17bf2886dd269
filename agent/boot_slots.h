/*
 * boot_slots.h - the A/B slots on the EFI system partition and their Boot Loader Specification
 * entries, with systemd-boot's boot counting.
 *
 * ESP layout (written by tools/image/mkdisk, changed only through this file):
 *   /EFI/BOOT/BOOTX64.EFI                    systemd-boot
 *   /loader/loader.conf                      timeout 0, editor no
 *   /loader/entries/gatehouse-SEQ-SLOT[+LEFT[-DONE]].conf
 *   /gatehouse/a/{vmlinuz,initrd}            slot A
 *   /gatehouse/b/{vmlinuz,initrd}            slot B
 *
 * An entry is `title`, `version`, `linux /gatehouse/SLOT/vmlinuz`, `initrd /gatehouse/SLOT/initrd`
 * and `options ... gatehouse.slot=SLOT gatehouse.image=sha256:...`. SEQ grows with every install.
 * systemd-boot (252, Debian 12) sorts entries without sort-key by id (the file name without the
 * counter), newest version first, and entries with no tries left last; it boots the first. So
 * the newest install is tried while it has tries; each boot of it renames +LEFT-DONE to
 * +(LEFT-1)-(DONE+1) before starting the kernel; when LEFT reaches 0 the entry sorts last and the
 * previous slot boots again. Blessing renames the entry to drop the counter: good for good.
 * (Checked under OVMF: gatehouse-2-b+2 booted twice, then gatehouse-1-a.)
 *
 * Safety: the active slot (gatehouse.slot= on /proc/cmdline) is never written. An install first
 * removes the inactive slot's entries (so nothing points at files being replaced), writes its
 * files under temporary names, fsyncs, renames them into place, and only then adds the new
 * entry (temporary name, fsync, rename to *.conf, fsync the folder). A power cut at any point
 * leaves at worst an inactive slot without an entry; the active entry still boots.
 */
#ifndef GATEHOUSE_BOOT_SLOTS_H
#define GATEHOUSE_BOOT_SLOTS_H

#include "image_digest.h"

#include <stddef.h>

#define BOOT_ESP_DEFAULT "/boot/efi"
#define BOOT_MAX_ENTRIES 16

struct boot_entry {
    char file[256];                        /* "gatehouse-3-b+2-1.conf" */
    char id[128];                          /* "gatehouse-3-b" */
    unsigned seq;
    char slot;                             /* 'a' or 'b' */
    int counting;                          /* has a +LEFT[-DONE] counter: not blessed */
    unsigned tries_left, tries_done;       /* meaningful when counting */
    char image_digest[IMAGE_DIGEST_LEN + 1]; /* from options, "" if absent */
    char version[128];                     /* the version line, "" if absent */
    char options[2048];                    /* the options line */
};

struct boot_state {
    char esp[4096];
    char active_slot;          /* from the command line's gatehouse.slot=; 0 when absent */
    char active_image[IMAGE_DIGEST_LEN + 1]; /* gatehouse.image= from the command line, or "" */
    struct boot_entry entries[BOOT_MAX_ENTRIES];  /* gatehouse-* entries only, sorted by seq */
    size_t count;
    int active;                /* index of the entry of the active slot, -1 if none */
    int fallback;              /* index of a newer entry of the other slot whose tries ran out
                                * (the node came back from it), -1 if none */
};

/* Reads ESP/loader/entries and the kernel command line text (the contents of /proc/cmdline).
 * Files that are not gatehouse-SEQ-SLOT[...].conf are ignored; a gatehouse entry that cannot be
 * parsed is an error. Returns 0, or -1 with err (ESP missing, unreadable, bad entry). */
int boot_state_read(const char *esp_dir, const char *cmdline, struct boot_state *st,
                    char *err, size_t errlen);

/* boot_state_read with the command line read from cmdline_path (/proc/cmdline on a node).
 * Returns 0, or -1 with err naming the file that could not be read or the entry at fault. */
int boot_state_load(const char *esp_dir, const char *cmdline_path, struct boot_state *st,
                    char *err, size_t errlen);

/* The slot an install writes: the one that is not active. 0 when there is no active slot
 * (not booted from a Gatehouse disk: installs are refused). */
char boot_inactive_slot(const struct boot_state *st);

/* 1 while the active entry still carries a counter (this boot is on trial). */
int boot_is_trial(const struct boot_state *st);

struct boot_install {
    const char *kernel_path;   /* staged files, copied onto the ESP */
    const char *initrd_path;
    const char *image_digest;  /* sha256:..., goes into options as gatehouse.image= */
    const char *version;       /* for title/version lines; "" -> "unknown"; sanitised to [A-Za-z0-9._+-] */
    unsigned tries;            /* 1..9 */
};

/* Installs into the inactive slot (see Safety above). Refused while the active entry is on
 * trial (the other slot is its way back). The options line is the active entry's
 * with gatehouse.slot= and gatehouse.image= (and any initrd=) replaced; SEQ = highest + 1.
 * Writes the new entry's file name into entry_out. Returns 0, or -1 with err. */
int boot_install_slot(const struct boot_state *st, const struct boot_install *in,
                      char *entry_out, size_t entry_outlen, char *err, size_t errlen);

/* Marks the active entry good: renames it without its counter (and fsyncs the folder). 0 when
 * done or already good; -1 with err (no active entry, rename failed). */
int boot_bless(const struct boot_state *st, char *err, size_t errlen);

/* Prometheus text (HELP/TYPE + samples) describing st: gatehouse_node_boot_info{slot,image_digest,entry} 1,
 * gatehouse_node_boot_trial 0|1, gatehouse_node_boot_fallback{failed_slot,failed_image} 0|1
 * (labels "" when 0). Returns bytes written (NUL-terminated), or -1 when out is too small. */
int boot_state_metrics(const struct boot_state *st, char *out, size_t outlen);

#endif
