/*
 * upgrade.c - `gatehouse-agent upgrade`: an appliance image from a registry into the inactive
 * slot (see upgrade.h).
 *
 * The order is the safety argument. Everything that can refuse the image runs before the ESP
 * is touched: the boot state (a trial boot may not upgrade: the other slot is its way back),
 * the trusted keys, the manifest, its signature, the config (architecture, kind), the layer
 * download with its digest, the extraction of kernel and initramfs into STATE/upgrade/. Only
 * then does boot_install_slot write the inactive slot; the active one is never written.
 *
 * Downloads live in STATE/upgrade/ (the data partition), so a pull cut off by the network or a
 * power loss resumes where it stopped the next time.
 */
#include "upgrade.h"

#include "boot_slots.h"
#include "file_read.h"
#include "image_layer.h"
#include "image_signature.h"
#include "kubeconfig.h"   /* kube_wipe_free */
#include "log.h"
#include "node_config.h"
#include "node_reboot.h"
#include "oci_registry.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef GATEHOUSE_VERSION
#define GATEHOUSE_VERSION "unknown"
#endif

#define EXIT_USAGE 2
#define CMDLINE_PATH "/proc/cmdline"
#define APPLIANCE_KIND_LABEL "dev.gatehouse.kind"
#define APPLIANCE_KIND "appliance"
#define VERSION_LABEL "org.opencontainers.image.version"
#define CONFIG_MAX (1u << 20)

struct upgrade_cli {
    const char *image, *config, *cmdline;
    int reboot, follow, tries;
};

struct upgrade_ctx {
    struct node_config cfg;
    struct oci_ref ref;
    struct oci_registry *reg;
    char user[256], pass[256];
};

/* What the pull found out about the image. */
struct image_facts {
    char digest[IMAGE_DIGEST_LEN + 1];   /* what REF resolves to: the signed digest */
    char version[128];
    json_t *manifest;                   /* the platform's image manifest */
};

/* ---- inputs: keys, credentials, boot state ---- */

static int has_key_suffix(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 &&
           (strcmp(name + n - 4, ".pem") == 0 || strcmp(name + n - 4, ".pub") == 0);
}

static int name_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* upgrade.trustedKeys: one PEM file, or a folder of *.pem / *.pub files (sorted). */
static int load_trust(const char *path, struct image_trust *trust, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return set_err(err, errlen, "trusted keys %s: %s (upgrade.trustedKeys): refusing to "
                       "install images nobody can vouch for", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return image_trust_add_file(trust, path, err, errlen);
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, NULL);
    if (n < 0)
        return set_err(err, errlen, "trusted keys %s: %s", path, strerror(errno));
    char *files[64];
    size_t count = 0;
    for (int i = 0; i < n; i++) {
        if (has_key_suffix(names[i]->d_name) && count < 64)
            files[count++] = names[i]->d_name;
    }
    qsort(files, count, sizeof files[0], name_compare);
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        char file[4400];
        snprintf(file, sizeof file, "%s/%s", path, files[i]);
        rc = image_trust_add_file(trust, file, err, errlen);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == 0 && trust->count == 0)
        return set_err(err, errlen, "trusted keys %s: no *.pem or *.pub file in it: refusing "
                       "to install images nobody can vouch for", path);
    return rc;
}

/* upgrade.credentialsFile: "username:password" on one line. */
static int load_credentials(const char *path, struct upgrade_ctx *ctx, char *err, size_t errlen)
{
    if (!path[0])
        return 0;
    size_t len;
    char *text = file_read_all(path, 4096, &len);
    if (!text)
        return set_err(err, errlen, "registry credentials %s: %s", path, strerror(errno));
    text[strcspn(text, "\r\n")] = '\0';
    char *colon = strchr(text, ':');
    int rc = 0;
    if (!colon || colon == text || strlen(text) >= sizeof ctx->user ||
        strlen(colon + 1) >= sizeof ctx->pass)
        rc = set_err(err, errlen, "registry credentials %s: expected one line "
                     "\"username:password\"", path);
    else {
        *colon = '\0';
        snprintf(ctx->user, sizeof ctx->user, "%s", text);
        snprintf(ctx->pass, sizeof ctx->pass, "%s", colon + 1);
    }
    kube_wipe_free(text, len);
    return rc;
}

/* ---- the image: manifest, signature, config ---- */

static const char *jstr(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* An index (or Docker manifest list): the linux/amd64 entry's digest. */
static int pick_platform(const json_t *index, char *digest, size_t len, char *err, size_t errlen)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(index, "manifests"), i, m) {
        const json_t *platform = json_object_get(m, "platform");
        if (strcmp(jstr(platform, "architecture"), "amd64") == 0 &&
            strcmp(jstr(platform, "os"), "linux") == 0 && image_digest_valid(jstr(m, "digest"))) {
            snprintf(digest, len, "%s", jstr(m, "digest"));
            return 0;
        }
    }
    return set_err(err, errlen, "the image index has no linux/amd64 image");
}

static json_t *parse_manifest(const struct oci_manifest_reply *r, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        set_err(err, errlen, "manifest %s is not a JSON object", r->digest);
        return NULL;
    }
    return doc;
}

static int is_index(const char *media_type, const json_t *doc)
{
    const char *mt = media_type[0] ? media_type : jstr(doc, "mediaType");
    return strcmp(mt, OCI_MT_INDEX) == 0 || strcmp(mt, DOCKER_MT_LIST) == 0 ||
           (!mt[0] && json_object_get(doc, "manifests"));
}

/* REF -> the image manifest for linux/amd64, and the digest REF resolves to (signed). */
static int resolve_image(struct upgrade_ctx *ctx, struct image_facts *img, char *err, size_t errlen)
{
    struct oci_manifest_reply r = { 0 };
    const char *reference = ctx->ref.digest[0] ? ctx->ref.digest : ctx->ref.tag;
    int rc = oci_registry_get_manifest(ctx->reg, reference, &r, err, errlen);
    if (rc != 0)
        return -1;
    snprintf(img->digest, sizeof img->digest, "%s", r.digest);
    json_t *doc = parse_manifest(&r, err, errlen);
    int index = doc && is_index(r.media_type, doc);
    free(r.body);
    if (!doc || !index) {
        img->manifest = doc;
        return doc ? 0 : -1;
    }
    char platform[IMAGE_DIGEST_LEN + 1];
    rc = pick_platform(doc, platform, sizeof platform, err, errlen);
    json_decref(doc);
    if (rc < 0)
        return -1;
    struct oci_manifest_reply p = { 0 };
    if (oci_registry_get_manifest(ctx->reg, platform, &p, err, errlen) != 0)
        return -1;
    img->manifest = parse_manifest(&p, err, errlen);
    free(p.body);
    return img->manifest ? 0 : -1;
}

/* The signature manifest under sha256-<hex>.sig, checked against the trusted keys. */
static int check_signature(struct upgrade_ctx *ctx, const struct image_trust *trust,
                           const char *digest, char *err, size_t errlen)
{
    char tag[80], why[512];
    image_signature_tag(digest, tag, sizeof tag);
    struct oci_manifest_reply r = { 0 };
    int rc = oci_registry_get_manifest(ctx->reg, tag, &r, why, sizeof why);
    if (rc == 1)
        return set_err(err, errlen, "%s/%s@%s is not signed (no %s in the repository): refused",
                       ctx->ref.registry, ctx->ref.repository, digest, tag);
    if (rc < 0)
        return set_err(err, errlen, "signature of %s: %s", digest, why);
    json_t *doc = parse_manifest(&r, why, sizeof why);
    free(r.body);
    const char *b64 = jstr(json_object_get(doc, "annotations"), IMAGE_SIGNATURE_ANNOTATION);
    const char *key = NULL;
    if (!b64[0])
        rc = set_err(err, errlen, "%s: %s has no %s annotation: refused", digest, tag,
                     IMAGE_SIGNATURE_ANNOTATION);
    else if (image_signature_verify_b64(trust, digest, b64, &key, why, sizeof why) < 0)
        rc = set_err(err, errlen, "%s: signature refused: %s", digest, why);
    else
        log_info("%s: signed by %s", digest, key);
    json_decref(doc);
    return rc;
}

/* The image config: an amd64 Linux Gatehouse appliance. Fills img->version. */
static int check_config(struct upgrade_ctx *ctx, struct image_facts *img, char *err, size_t errlen)
{
    const json_t *desc = json_object_get(img->manifest, "config");
    const char *digest = jstr(desc, "digest");
    json_int_t size = json_integer_value(json_object_get(desc, "size"));
    if (!image_digest_valid(digest) || size <= 0 || size > CONFIG_MAX)
        return set_err(err, errlen, "%s: the manifest names no usable config blob", img->digest);
    char *text = oci_registry_get_small_blob(ctx->reg, digest, (uint64_t)size, CONFIG_MAX,
                                             err, errlen);
    if (!text)
        return -1;
    json_t *config = json_loads(text, 0, NULL);
    free(text);
    const json_t *labels = json_object_get(json_object_get(config, "config"), "Labels");
    int rc = 0;
    if (!json_is_object(config))
        rc = set_err(err, errlen, "%s: config %s is not JSON", img->digest, digest);
    else if (strcmp(jstr(config, "architecture"), "amd64") || strcmp(jstr(config, "os"), "linux"))
        rc = set_err(err, errlen, "%s is a %s/%s image; this node runs linux/amd64: refused",
                     img->digest, jstr(config, "os"), jstr(config, "architecture"));
    else if (strcmp(jstr(labels, APPLIANCE_KIND_LABEL), APPLIANCE_KIND) != 0)
        rc = set_err(err, errlen, "%s is not a Gatehouse appliance image (label %s=%s "
                     "missing): refused", img->digest, APPLIANCE_KIND_LABEL, APPLIANCE_KIND);
    snprintf(img->version, sizeof img->version, "%s", jstr(labels, VERSION_LABEL));
    json_decref(config);
    return rc;
}

/* ---- the layer ---- */

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return set_err(err, errlen, "mkdir %s: %s", path, strerror(errno));
    return 0;
}

/* Downloads of other layers (a pull cut off and never retried, an image since replaced) would
 * fill the data partition over time: only the one being fetched is kept. */
static void remove_other_downloads(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "layer-", 6) == 0 && strncmp(de->d_name, keep, strlen(keep)) != 0) {
            if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                log_info("removed an old download, %s/%s", dir, de->d_name);
        }
    }
    closedir(d);
}

/* Downloads the last layer (the appliance's boot files are in its top layer) into
 * STATE/upgrade/ and extracts vmlinuz and initrd beside it. */
static int fetch_boot_files(struct upgrade_ctx *ctx, const struct image_facts *img,
                            char kernel[4300], char initrd[4300], char *err, size_t errlen)
{
    const json_t *layers = json_object_get(img->manifest, "layers");
    size_t n = json_array_size(layers);
    if (n == 0)
        return set_err(err, errlen, "%s: the manifest has no layers", img->digest);
    const json_t *layer = json_array_get(layers, n - 1);
    const char *digest = jstr(layer, "digest"), *mt = jstr(layer, "mediaType");
    json_int_t size = json_integer_value(json_object_get(layer, "size"));
    int gzip = strstr(mt, "gzip") != NULL;
    if (!image_digest_valid(digest) || size <= 0 || !strstr(mt, "tar") ||
        (strstr(mt, "+") && !gzip))
        return set_err(err, errlen, "%s: layer %s (%s) is not a tar or tar+gzip layer",
                       img->digest, digest, mt);
    char dir[4200], blob[4300];
    snprintf(dir, sizeof dir, "%s/upgrade", ctx->cfg.agent_state_dir);
    if (make_dir(dir, err, errlen) < 0)
        return -1;
    snprintf(blob, sizeof blob, "%s/layer-%s", dir, digest + 7);
    remove_other_downloads(dir, strrchr(blob, '/') + 1);
    struct oci_blob_result got = { 0 };
    time_t t0 = time(NULL);
    if (oci_registry_get_blob(ctx->reg, digest, (uint64_t)size, blob, &got, err, errlen) < 0)
        return -1;
    if (got.already_present)
        log_info("layer %s already downloaded", digest);
    else
        log_info("layer %s: %llu bytes in %lld s, resumed at byte %llu", digest,
                 (unsigned long long)got.fetched, (long long)(time(NULL) - t0),
                 (unsigned long long)got.resumed_from);
    snprintf(kernel, 4300, "%s/vmlinuz", dir);
    snprintf(initrd, 4300, "%s/initrd", dir);
    unlink(kernel);
    unlink(initrd);
    struct image_layer_out out = { .kernel_path = kernel, .initrd_path = initrd };
    if (image_layer_extract_boot(blob, gzip, &out, err, errlen) < 0)
        return -1;
    unlink(blob);
    return 0;
}

/* ---- one upgrade ---- */

static int open_registry(struct upgrade_ctx *ctx, const char *image, char *err, size_t errlen)
{
    if (oci_ref_parse(image, &ctx->ref, err, errlen) < 0)
        return -1;
    if (load_credentials(ctx->cfg.upgrade_credentials_file, ctx, err, errlen) < 0)
        return -1;
    struct oci_registry_options opts = {
        .plain_http = ctx->cfg.upgrade_plain_http,
        .ca_file = ctx->cfg.upgrade_ca_file[0] ? ctx->cfg.upgrade_ca_file : NULL,
        .username = ctx->user[0] ? ctx->user : NULL,
        .password = ctx->user[0] ? ctx->pass : NULL,
        .user_agent = "gatehouse-agent/" GATEHOUSE_VERSION,
    };
    ctx->reg = oci_registry_open(&ctx->ref, &opts, err, errlen);
    return ctx->reg ? 0 : -1;
}

/* Checks, downloads and installs. Returns 0 when installed (entry_out names the new entry). */
static int install_image(struct upgrade_ctx *ctx, const struct boot_state *st,
                         const struct image_trust *trust, struct image_facts *img,
                         char *entry_out, size_t entry_len, char *err, size_t errlen)
{
    if (check_signature(ctx, trust, img->digest, err, errlen) < 0)
        return -1;
    if (check_config(ctx, img, err, errlen) < 0)
        return -1;
    char kernel[4300], initrd[4300];
    if (fetch_boot_files(ctx, img, kernel, initrd, err, errlen) < 0)
        return -1;
    struct boot_install in = { .kernel_path = kernel, .initrd_path = initrd,
                               .image_digest = img->digest, .version = img->version,
                               .tries = (unsigned)ctx->cfg.upgrade_tries };
    int rc = boot_install_slot(st, &in, entry_out, entry_len, err, errlen);
    unlink(kernel);
    unlink(initrd);
    return rc;
}

/* Refuses to start when this node cannot take an install right now. */
static int check_installable(const struct boot_state *st, char *err, size_t errlen)
{
    if (!boot_inactive_slot(st) || st->active < 0)
        return set_err(err, errlen, "not booted from a Gatehouse boot entry (no gatehouse.slot= "
                       "on the kernel command line, or no entry for it in %s/loader/entries): "
                       "nowhere to install", st->esp);
    if (boot_is_trial(st))
        return set_err(err, errlen, "this boot (%s) is still on trial: the other slot is its "
                       "way back, so no upgrade until boot-check has marked it good",
                       st->entries[st->active].file);
    return 0;
}

static int upgrade_once(struct upgrade_ctx *ctx, const char *image, const char *cmdline, int reboot)
{
    char err[1024];
    static struct boot_state st;
    static struct image_trust trust;
    memset(&trust, 0, sizeof trust);
    struct image_facts img = { 0 };
    char entry[256];
    int rc = -1;
    if (boot_state_load(ctx->cfg.upgrade_esp, cmdline, &st, err, sizeof err) < 0 ||
        check_installable(&st, err, sizeof err) < 0 ||
        load_trust(ctx->cfg.upgrade_trusted_keys, &trust, err, sizeof err) < 0 ||
        open_registry(ctx, image, err, sizeof err) < 0 ||
        resolve_image(ctx, &img, err, sizeof err) < 0)
        goto out;
    log_info("%s resolves to %s", image, img.digest);
    if (strcmp(img.digest, st.active_image) == 0) {
        log_info("%s is already running (slot %c): nothing to do", img.digest, st.active_slot);
        rc = 0;
        goto out;
    }
    if (install_image(ctx, &st, &trust, &img, entry, sizeof entry, err, sizeof err) < 0)
        goto out;
    log_info("installed %s (version %s) into slot %c as %s: it boots next, %d tries to become "
             "healthy", img.digest, img.version[0] ? img.version : "unknown",
             boot_inactive_slot(&st), entry, ctx->cfg.upgrade_tries);
    rc = 0;
    if (reboot)
        node_reboot("upgrade installed");
out:
    if (rc < 0)
        log_error("upgrade to %s: %s", image, err);
    json_decref(img.manifest);
    oci_registry_close(ctx->reg);
    ctx->reg = NULL;
    explicit_bzero(ctx->pass, sizeof ctx->pass);
    return rc;
}

/* ---- --follow: keep the node on upgrade.image ---- */

/* What REF resolves to now, without downloading anything else. */
static int lookup_digest(struct upgrade_ctx *ctx, const char *image, char digest[IMAGE_DIGEST_LEN + 1],
                         char *err, size_t errlen)
{
    struct oci_manifest_reply r = { 0 };
    int rc = open_registry(ctx, image, err, errlen);
    if (rc == 0)
        rc = oci_registry_get_manifest(ctx->reg, ctx->ref.digest[0] ? ctx->ref.digest : ctx->ref.tag,
                                       &r, err, errlen) == 0 ? 0 : -1;
    if (rc == 0)
        snprintf(digest, IMAGE_DIGEST_LEN + 1, "%s", r.digest);
    free(r.body);
    oci_registry_close(ctx->reg);
    ctx->reg = NULL;
    return rc;
}

/* 1 when digest is already installed in the inactive slot with tries left (it boots next). */
static int pending_install(const struct boot_state *st, const char *digest)
{
    char slot = boot_inactive_slot(st);
    for (size_t i = 0; i < st->count; i++) {
        const struct boot_entry *e = &st->entries[i];
        if (e->slot == slot && e->counting && e->tries_left > 0 &&
            strcmp(e->image_digest, digest) == 0)
            return 1;
    }
    return 0;
}

/* One look at upgrade.image: installs and reboots when it names an image this node neither runs
 * nor has already seen fail. Logs each distinct outcome once (last_note). */
static void follow_step(struct upgrade_ctx *ctx, const char *cmdline, char last_note[2048])
{
    char err[1024], digest[IMAGE_DIGEST_LEN + 1], note[2048];
    static struct boot_state st;
    const char *image = ctx->cfg.upgrade_image;
    if (boot_state_load(ctx->cfg.upgrade_esp, cmdline, &st, err, sizeof err) < 0 ||
        check_installable(&st, err, sizeof err) < 0 ||
        lookup_digest(ctx, image, digest, err, sizeof err) < 0) {
        snprintf(note, sizeof note, "%s", err);
    } else if (strcmp(digest, st.active_image) == 0) {
        snprintf(note, sizeof note, "%s (%s) is running", image, digest);
    } else if (st.fallback >= 0 && strcmp(digest, st.entries[st.fallback].image_digest) == 0) {
        snprintf(note, sizeof note, "%s (%s) failed its trial boots on this node: not tried again "
                 "until upgrade.image names another image", image, digest);
    } else if (pending_install(&st, digest)) {
        snprintf(note, sizeof note, "%s (%s) is installed in slot %c and boots next", image,
                 digest, boot_inactive_slot(&st));
        if (ctx->cfg.upgrade_reboot)
            node_reboot("upgrade installed");
    } else {
        log_info("upgrade.image %s now resolves to %s (running %s): upgrading", image, digest,
                 st.active_image[0] ? st.active_image : "unknown");
        upgrade_once(ctx, image, cmdline, ctx->cfg.upgrade_reboot);
        last_note[0] = '\0';
        return;
    }
    if (strcmp(note, last_note) != 0)
        log_info("upgrade: %s", note);
    snprintf(last_note, 2048, "%s", note);
}

static int follow(struct upgrade_ctx *ctx, const char *cmdline)
{
    if (!ctx->cfg.upgrade_image[0]) {
        log_info("upgrade.image is not set: no image to follow");
        return 0;
    }
    char last_note[2048] = "";
    for (;;) {
        follow_step(ctx, cmdline, last_note);
        struct timespec ts = { ctx->cfg.upgrade_check_interval_ms / 1000,
                               (ctx->cfg.upgrade_check_interval_ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
}

/* ---- command line ---- */

static void upgrade_usage(FILE *out)
{
    fprintf(out,
        "usage: gatehouse-agent upgrade --image REF [--reboot] [options]\n"
        "       gatehouse-agent upgrade --follow [options]\n"
        "Installs the appliance image REF (REGISTRY/REPOSITORY[:TAG][@sha256:...]) into the\n"
        "inactive boot slot, after checking its signature, platform and digests; it boots next\n"
        "with upgrade.tries tries to become healthy. --follow keeps the node on upgrade.image.\n"
        "\n"
        "  --image REF        the image (config upgrade.image)\n"
        "  --reboot           reboot into it once installed\n"
        "  --follow           look up upgrade.image every upgrade.checkInterval; install and\n"
        "                     (with upgrade.reboot) reboot when it changes\n"
        "  --tries N          boots the new image gets (config upgrade.tries, default 3)\n"
        "  --config FILE      node config (default " NODE_CONFIG_DEFAULT_PATH ")\n"
        "  --esp DIR          the mounted EFI system partition (config upgrade.esp, /boot/efi)\n"
        "  --state-dir DIR    where downloads go (config agent.stateDir)\n"
        "  --trusted-keys P   a P-256 public key PEM, or a folder of them (upgrade.trustedKeys)\n"
        "  --plain-http       the registry speaks http:// (config upgrade.plainHttp)\n"
        "  --cmdline FILE     the kernel command line to read (default /proc/cmdline)\n"
        "Exit status: 0 installed (or already running), 1 refused or failed, 2 usage.\n");
}

static int set_string(char *field, size_t size, const char *value, const char *flag)
{
    if (!value[0] || strlen(value) >= size) {
        fprintf(stderr, "gatehouse-agent upgrade: %s: empty or too long\n", flag);
        return -1;
    }
    snprintf(field, size, "%s", value);
    return 0;
}

int upgrade_command(int argc, char **argv)
{
    enum { O_IMAGE = 256, O_REBOOT, O_FOLLOW, O_TRIES, O_CONFIG, O_ESP, O_STATE, O_KEYS,
           O_PLAIN, O_CMDLINE };
    static const struct option options[] = {
        { "image", required_argument, NULL, O_IMAGE }, { "reboot", no_argument, NULL, O_REBOOT },
        { "follow", no_argument, NULL, O_FOLLOW }, { "tries", required_argument, NULL, O_TRIES },
        { "config", required_argument, NULL, O_CONFIG }, { "esp", required_argument, NULL, O_ESP },
        { "state-dir", required_argument, NULL, O_STATE },
        { "trusted-keys", required_argument, NULL, O_KEYS },
        { "plain-http", no_argument, NULL, O_PLAIN },
        { "cmdline", required_argument, NULL, O_CMDLINE },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    static struct upgrade_ctx ctx;
    struct upgrade_cli cli = { .cmdline = CMDLINE_PATH };
    const char *esp = NULL, *state = NULL, *keys = NULL;
    int plain = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case O_IMAGE: cli.image = optarg; break;
        case O_REBOOT: cli.reboot = 1; break;
        case O_FOLLOW: cli.follow = 1; break;
        case O_TRIES: cli.tries = atoi(optarg); if (cli.tries < 1) cli.tries = 99; break;
        case O_CONFIG: cli.config = optarg; break;
        case O_ESP: esp = optarg; break;
        case O_STATE: state = optarg; break;
        case O_KEYS: keys = optarg; break;
        case O_PLAIN: plain = 1; break;
        case O_CMDLINE: cli.cmdline = optarg; break;
        case 'h': upgrade_usage(stdout); return 0;
        default: upgrade_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc || (!cli.image && !cli.follow) || (cli.image && cli.follow)) {
        fprintf(stderr, "gatehouse-agent upgrade: give --image REF or --follow\n");
        return EXIT_USAGE;
    }
    char err[1024];
    node_config_defaults(&ctx.cfg);
    if (node_config_load(&ctx.cfg, cli.config ? cli.config : NODE_CONFIG_DEFAULT_PATH,
                         !cli.config, err, sizeof err) < 0) {
        log_error("%s", err);
        return EXIT_USAGE;
    }
    if ((esp && set_string(ctx.cfg.upgrade_esp, sizeof ctx.cfg.upgrade_esp, esp, "--esp") < 0) ||
        (state && set_string(ctx.cfg.agent_state_dir, sizeof ctx.cfg.agent_state_dir, state,
                             "--state-dir") < 0) ||
        (keys && set_string(ctx.cfg.upgrade_trusted_keys, sizeof ctx.cfg.upgrade_trusted_keys,
                            keys, "--trusted-keys") < 0))
        return EXIT_USAGE;
    if (plain)
        ctx.cfg.upgrade_plain_http = 1;
    if (cli.tries)
        ctx.cfg.upgrade_tries = cli.tries;
    if (ctx.cfg.upgrade_tries < 1 || ctx.cfg.upgrade_tries > 9) {
        fprintf(stderr, "gatehouse-agent upgrade: tries must be 1..9\n");
        return EXIT_USAGE;
    }
    if (cli.follow)
        return follow(&ctx, cli.cmdline);
    return upgrade_once(&ctx, cli.image, cli.cmdline, cli.reboot) == 0 ? 0 : 1;
}
