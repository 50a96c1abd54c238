/*
 * The versioned store of resources (docs/control.md, "store").
 *
 * Resources belong to a source: "dir" (the watched configuration directory,
 * replaced as a whole after each reload) or "api" (`veil apply` upserts,
 * `veil delete` removes). A resource id (Kind/ns/name) belongs to one
 * source at a time: naming it from the other source is refused.
 *
 * Every operation is all or nothing: it is checked completely (parse,
 * validation, duplicates, conflicts, ClusterIP allocation, the state file
 * written) before anything changes; on error nothing changes, `err` names
 * file, line, field and reason, and the error is kept as the source's last
 * error (veil_store_last_error) until that source's next success.
 *
 * Versions: a global counter (persisted). Each change of one resource gets
 * the next version; the change is logged with its before-image (the log
 * owns the replaced object), bounded by opts.log_max.
 *
 * Persistence: with a state dir, the api set, the version counter and all
 * ClusterIP assignments are written to STATE_DIR/resources.json (temp file,
 * fsync, rename) before each commit; veil_store_open() reloads them. dir
 * resources are not persisted (the directory is re-read at start), but
 * their ClusterIPs are, so addresses stay stable across restarts.
 *
 * Threading: single-threaded; call from the control plane's loop thread.
 * Return conventions: 0, -EINVAL (configuration error, err filled),
 * -ENOENT (delete of a missing resource, err filled), -ENOSPC (ClusterIP
 * range exhausted, err filled), -ENOMEM, or another -errno from writing
 * the state file (err filled).
 */
#ifndef VEIL_CONTROL_STORE_H
#define VEIL_CONTROL_STORE_H

#include "control/store-t.h"

#define VEIL_STORE_DEFAULT_CIDR    "198.19.0.0/16"
#define VEIL_STORE_DEFAULT_LOG_MAX 100000
#define VEIL_STORE_STATE_FILE      "resources.json"

/*
 * Opens a store; with opts->state_dir, loads STATE_DIR/resources.json when
 * it exists (an unreadable or invalid state file is an error, never ignored).
 */
int veil_store_open(struct veil_store **out, const struct veil_store_opts *opts,
                    struct veil_conf_err *err);
void veil_store_free(struct veil_store *s);

/* The version of the last change (0 for a store that never changed). */
uint64_t veil_store_version(const struct veil_store *s);

/* One listener (the views); called after each commit with its changes. */
void veil_store_set_listener(struct veil_store *s, veil_store_listener_fn *fn, void *ctx);

/*
 * `veil apply`: upserts every resource of every document of `confs` into
 * the api source. Identical resources are "unchanged" and get no version.
 * `rep` (may be NULL) receives what happened; free it with
 * veil_store_report_free().
 */
int veil_store_apply(struct veil_store *s, struct veil_conf *const *confs, size_t n,
                     struct veil_store_report *rep, struct veil_conf_err *err);

/*
 * The directory source's new complete set: upserts what is in `confs` and
 * removes the dir resources that are not.
 */
int veil_store_replace_dir(struct veil_store *s, struct veil_conf *const *confs, size_t n,
                           struct veil_store_report *rep, struct veil_conf_err *err);

/*
 * `veil delete`: removes api resources by id ("Service/default/web",
 * "Namespace/prod"). A missing id is an error ("not found") and nothing is
 * deleted. veil_store_delete_docs() takes the ids from documents
 * (`veil delete -f`).
 */
int veil_store_delete(struct veil_store *s, const char *const *ids, size_t n,
                      struct veil_store_report *rep, struct veil_conf_err *err);
int veil_store_delete_docs(struct veil_store *s, struct veil_conf *const *confs, size_t n,
                           struct veil_store_report *rep, struct veil_conf_err *err);

void veil_store_report_free(struct veil_store_report *rep);
const char *veil_store_outcome_str(enum veil_store_outcome o);

/* A resource by id, or NULL. Valid until the next operation. */
const struct veil_res *veil_store_get(const struct veil_store *s, const char *id);

/* Number of resources of `kind`; VEIL_RES_NKINDS counts all. */
size_t veil_store_count(const struct veil_store *s, enum veil_res_kind kind);

/*
 * The resources of `kind` (VEIL_RES_NKINDS: all) sorted by id, in a
 * veil_malloc'd array the caller frees (the resources stay the store's).
 * 0, or -ENOMEM. VEIL_RES_IGNORED lists the ignored kinds with file/line.
 */
int veil_store_list(const struct veil_store *s, enum veil_res_kind kind,
                    const struct veil_res ***out, size_t *n);

/* Calls fn for every resource, in no particular order. */
void veil_store_each(const struct veil_store *s, void (*fn)(void *ctx, const struct veil_res *r),
                     void *ctx);

/*
 * Calls fn for every change with a version > since, oldest first. -ERANGE
 * when some of those changes are no longer in the log.
 */
int veil_store_changes_since(const struct veil_store *s, uint64_t since,
                             void (*fn)(void *ctx, const struct veil_store_change *c), void *ctx);

/* The last refused operation of a source, or NULL when its last one passed. */
const struct veil_conf_err *veil_store_last_error(const struct veil_store *s,
                                                  enum veil_res_source src);

/* The ClusterIP assigned to Service ns/name, or NULL. */
const char *veil_store_cluster_ip(const struct veil_store *s, const char *ns, const char *name);

/* ---- internal to src/control: the string map --------------------------- */

uint64_t veil_store__hash(const char *s);
/* The slot of `key` or NULL. */
struct veil_store__slot *veil_store__map_find(const struct veil_store__map *m, const char *key,
                                              uint64_t h);
/* Inserts or replaces. 0 or -ENOMEM (then the map is unchanged). */
int veil_store__map_put(struct veil_store__map *m, const char *key, uint64_t h, void *p,
                        uint64_t u);
/* Makes room for `extra` more keys without further allocation. */
int veil_store__map_reserve(struct veil_store__map *m, size_t extra);
/* Removes `key`; true when it was there. Never allocates. */
bool veil_store__map_del(struct veil_store__map *m, const char *key, uint64_t h);
int veil_store__map_copy(struct veil_store__map *dst, const struct veil_store__map *src);
void veil_store__map_free(struct veil_store__map *m);
static inline size_t veil_store__map_len(const struct veil_store__map *m)
{
    return m->_n;
}

#endif
