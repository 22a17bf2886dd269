/*
 * fuzz_cloud_config.c - libFuzzer target for NoCloud user-data, which comes from whoever made the
 * node's cidata volume.
 *
 * Whatever the input, the parser answers OK, IGNORED or INVALID with a message; a plan it
 * accepts only names files the allow-list admits and a valid hostname, and its network plan
 * always turns into shell assignments. The same bytes read as meta-data must yield either no
 * hostname or a valid one.
 *
 * Built with rootfs/cloud_config.c (see the Makefile's fuzz rules).
 */
#include "cloud_config.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
    const char *text = (const char *)data;
    struct cc_plan plan;
    char msg[512];
    cloud_config_plan_init(&plan);
    enum cc_status st = cloud_config_parse(text, len, &plan, msg, sizeof msg);
    if (st != CC_OK && st != CC_IGNORED && st != CC_INVALID)
        abort();
    if (st == CC_OK) {
        for (size_t i = 0; i < plan.nfiles; i++)
            if (!cloud_config_path_allowed(plan.files[i].path))
                abort();
        if (plan.hostname[0] && !cloud_config_hostname_ok(plan.hostname))
            abort();
        char *env = cloud_config_network_env(&plan.net);
        if (!env)
            abort();
        free(env);
    }
    cloud_config_plan_free(&plan);
    char name[CC_HOSTNAME_MAX + 1];
    if (cloud_config_meta_hostname(text, len, name) == 1
        && !cloud_config_hostname_ok(name))
        abort();
    return 0;
}
