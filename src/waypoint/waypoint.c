/* The waypoint's L7 engine (waypoint.h). */
#include "waypoint/waypoint.h"

#include "core/alloc.h"
#include "hbone/hbone.h"

#include <errno.h>
#include <string.h>

struct veil_wp {
    struct veil_wp_env env;
};

struct veil_wp *veil_wp_new(const struct veil_wp_env *env)
{
    if (env == NULL || env->loop == NULL || env->cfg == NULL || env->pool == NULL) {
        errno = EINVAL;
        return NULL;
    }
    struct veil_wp *wp = veil_calloc(1, sizeof(*wp));
    if (wp == NULL)
        return NULL;
    wp->env = *env;
    return wp;
}

void veil_wp_free(struct veil_wp *wp)
{
    veil_free(wp);
}

int veil_wp_config_item(struct veil_wp *wp, const char *kind, const char *key, const char *ns,
                        const char *name, const struct json_t *spec, char *err, size_t errlen)
{
    (void)wp, (void)kind, (void)key, (void)ns, (void)name, (void)spec;
    if (errlen > 0)
        err[0] = '\0';
    return 0;
}

void veil_wp_connect(struct veil_wp *wp, struct veil_hbone_h2s *h2s,
                     const struct veil_hbone_connect_info *info)
{
    (void)wp, (void)info;
    veil_hbone_h2s_respond(h2s, 503);
}

void veil_wp_set_client_tls(struct veil_wp *wp, struct veil_tls_ctx *tls)
{
    wp->env.client_tls = tls;
}
