/*
 * upgrade.h - the node's image upgrades: `gatehouse-agent upgrade` and `gatehouse-agent
 * boot-check` (docs/upgrades.md tells the whole story).
 *
 * upgrade: resolve REF in its registry, check the signature over the manifest digest against
 * the trusted keys, check the image is an amd64 Gatehouse appliance, download its layer
 * (resumable, every byte checked against its digest), take out the kernel and initramfs and
 * install them into the inactive slot with a limited number of tries (boot_slots.h). Nothing
 * on the ESP is touched before every check has passed. With --follow it keeps the node on
 * upgrade.image: looked up every upgrade.checkInterval, installed and booted when it changes.
 *
 * boot-check: once per boot (an s6 oneshot-like service). On a trial boot it waits for the
 * proxy to be ready and to answer on its HTTP listener, then blesses the boot entry; if that does
 * not happen within upgrade.healthTimeout it reboots, which spends one try; when the tries are
 * spent the boot loader goes back to the previous slot. Either way it reports the slot, the
 * image and any fallback in STATE/boot.prom and the log.
 */
#ifndef GATEHOUSE_UPGRADE_H
#define GATEHOUSE_UPGRADE_H

/* argv[0] is the subcommand name. Return the process exit status. */
int upgrade_command(int argc, char **argv);
int boot_check_command(int argc, char **argv);

#endif
