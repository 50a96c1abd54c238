/* Types of the metrics registry; see metrics.h for the contract. */
#ifndef VEIL_CORE_METRICS_T_H
#define VEIL_CORE_METRICS_T_H

enum veil_metrics_type {
    VEIL_METRICS_COUNTER = 0,
    VEIL_METRICS_GAUGE = 1,
    VEIL_METRICS_HISTOGRAM = 2,
};

/* Series a family may hold before new label tuples go to its overflow series. */
#define VEIL_METRICS_DEFAULT_SERIES_CAP 10000

/* Every label value of a family's overflow series. */
#define VEIL_METRICS_OVERFLOW_VALUE "__overflow__"

/* Largest text veil_metrics_render() produces, NUL included. */
#define VEIL_METRICS_RENDER_MAX ((size_t)256 << 20)

/* All three are opaque; use the functions in metrics.h. */
struct veil_metrics;        /* a registry: families in registration order */
struct veil_metrics_family; /* one metric name, its help, type and label names */
struct veil_metrics_series; /* one label-value tuple of a family, and its value */

#endif
