/*
 * Metrics registry: counters, gauges and histograms, rendered in the
 * Prometheus text exposition format 0.0.4 (docs/metrics.md).
 *
 * A registry (struct veil_metrics) holds families; a family has a name, a
 * help text, a type and a fixed list of label names; it holds one series per
 * tuple of label values. The caller creates the registry and owns it; the
 * registry owns its families and series, which live until veil_metrics_free().
 * Series are never removed (Prometheus expects a counter to go on existing),
 * so a handle stays valid for the registry's lifetime and may be cached.
 *
 * Threading:
 *  - Registration, series lookup and rendering may be called from any thread
 *    at the same time. Registration takes the registry's mutex; a lookup that
 *    finds an existing series takes no lock; creating a series takes the
 *    family's mutex; rendering takes the registry's mutex and each family's in
 *    turn (values are read with atomic loads, never under a lock that the hot
 *    path needs).
 *  - The value operations (veil_metrics_counter_add, _gauge_set, _gauge_add,
 *    _histogram_observe) are lock-free and allocation-free, safe from any
 *    number of threads, also while another thread renders.
 *  - veil_metrics_free() must not race with any other call on the registry.
 *
 * Errors follow docs/internals.md: constructors return NULL with errno set,
 * veil_metrics_render() returns 0 or -errno. Nothing aborts on bad input.
 */
#ifndef VEIL_CORE_METRICS_H
#define VEIL_CORE_METRICS_H

#include "core/metrics-t.h"

#include <stddef.h>
#include <stdint.h>

/* A new, empty registry, or NULL with errno = ENOMEM. */
struct veil_metrics *veil_metrics_new(void);

/* Frees the registry, its families and series; every handle dies. NULL is a no-op. */
void veil_metrics_free(struct veil_metrics *reg);

/*
 * Registers a family and returns it (owned by the registry).
 *
 * name: [a-zA-Z_:][a-zA-Z0-9_:]*; a counter's name must end in "_total", a
 *   gauge's or histogram's must not; no name may end in "_bucket", "_sum" or
 *   "_count" (the histogram sample suffixes), so families never collide.
 * help: non-empty UTF-8; escaped when rendered.
 * label_names: `nlabels` names, [a-zA-Z_][a-zA-Z0-9_]*, not starting with
 *   "__", not "le" or "quantile" (reserved), no duplicates. May be NULL when
 *   nlabels is 0. The registry copies every string.
 *
 * Registering a name again with the same type, help, label names (and
 * buckets) returns the existing family, so independent modules may each
 * register what they use. Returns NULL with errno EINVAL (an invalid
 * argument), EEXIST (the name exists with a different definition) or ENOMEM.
 */
struct veil_metrics_family *veil_metrics_counter(struct veil_metrics *reg, const char *name,
                                                 const char *help, size_t nlabels,
                                                 const char *const *label_names);
struct veil_metrics_family *veil_metrics_gauge(struct veil_metrics *reg, const char *name,
                                               const char *help, size_t nlabels,
                                               const char *const *label_names);
/*
 * bounds: `nbounds` finite bucket upper bounds, strictly increasing; the
 * +Inf bucket is implicit and must not be given. nbounds may be 0.
 */
struct veil_metrics_family *veil_metrics_histogram(struct veil_metrics *reg, const char *name,
                                                   const char *help, size_t nlabels,
                                                   const char *const *label_names, size_t nbounds,
                                                   const double *bounds);

/*
 * Sets how many series the family may create (VEIL_METRICS_DEFAULT_SERIES_CAP
 * at registration). Existing series stay; only later creations are checked.
 * Thread-safe.
 */
void veil_metrics_set_series_cap(struct veil_metrics_family *fam, size_t cap);

/*
 * Returns the family's series for `label_values` (the family's nlabels
 * strings, in label-name order; may be NULL when nlabels is 0), creating it
 * on first use with a zero value. The strings are copied; they must be valid
 * UTF-8 (Prometheus refuses anything else).
 *
 * Past the family's series cap, a new tuple gets the family's overflow series
 * instead: one shared series whose label values are all
 * VEIL_METRICS_OVERFLOW_VALUE, rendered like any other, so totals stay right
 * and the explosion is visible. Each such refusal is counted (see
 * veil_metrics_family_dropped()).
 *
 * Returns NULL with errno EINVAL (NULL family or value, invalid UTF-8) or
 * ENOMEM. The value operations accept NULL and do nothing, so a caller may
 * use the result without checking it and lose only samples on failure.
 */
struct veil_metrics_series *veil_metrics_series(struct veil_metrics_family *fam,
                                                const char *const *label_values);

/* Number of veil_metrics_series() calls that the series cap sent to the overflow series. */
uint64_t veil_metrics_family_dropped(const struct veil_metrics_family *fam);

/*
 * Hot path: lock-free, allocation-free, any thread. `s` may be NULL (no-op).
 * Using a series of another type is a bug: it aborts in debug builds and is
 * ignored in release builds.
 */
void veil_metrics_counter_add(struct veil_metrics_series *s, uint64_t n);
void veil_metrics_gauge_set(struct veil_metrics_series *s, double v);
void veil_metrics_gauge_add(struct veil_metrics_series *s, double v);
/* Counts `v` in the first bucket with v <= bound (NaN: the +Inf bucket) and adds it to the sum. */
void veil_metrics_histogram_observe(struct veil_metrics_series *s, double v);

/* Current values (0 for NULL or a series of another type). */
uint64_t veil_metrics_counter_get(const struct veil_metrics_series *s);
double veil_metrics_gauge_get(const struct veil_metrics_series *s);

/*
 * Renders every family in registration order, its series in creation order,
 * as Prometheus text format 0.0.4. A family without series renders only its
 * HELP and TYPE lines. A histogram's +Inf bucket and _count are the same
 * snapshot; its _sum may include observations made while rendering.
 * Floats are printed with printf, so LC_NUMERIC must be "C" (the default).
 *
 * On success *out is a NUL-terminated string owned by the caller (free with
 * veil_free()) and *len its length without the NUL; returns 0. Returns
 * -EINVAL (NULL argument), -ENOMEM, or -ENOBUFS (the text would exceed
 * VEIL_METRICS_RENDER_MAX); *out is then untouched.
 */
int veil_metrics_render(struct veil_metrics *reg, char **out, size_t *len);

#endif
