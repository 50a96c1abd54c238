#include "core/sched.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

int veil_sched_parse(const char *s, enum veil_sched *out)
{
    if (strcmp(s, "batch") == 0)
        *out = VEIL_SCHED_BATCH;
    else if (strcmp(s, "inherit") == 0)
        *out = VEIL_SCHED_INHERIT;
    else
        return -EINVAL;
    return 0;
}

int veil_sched_apply(enum veil_sched policy)
{
    if (policy == VEIL_SCHED_INHERIT)
        return 0;
    struct sched_param sp = {.sched_priority = 0};
    return sched_setscheduler(0, SCHED_BATCH, &sp) == 0 ? 0 : -errno;
}
