/* Tests of src/node/telemetry.c: Istio's TCP labels and the access log. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/metrics.h"
#include "core/alloc.h"
#include "node/telemetry.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

static const struct veil_node_conn_info out = {
    .reporter = "source",
    .src_workload = "client",
    .src_ns = "default",
    .src_principal = "spiffe://cluster.local/ns/default/sa/client",
    .dst_workload = "web-1",
    .dst_ns = "default",
    .dst_principal = "spiffe://cluster.local/ns/default/sa/web",
    .dst_service = "web.default.svc.cluster.local",
    .security = "mutual_tls",
    .flags = NULL,
    .src_addr = "198.18.1.1:40000",
    .dst_addr = "198.18.1.2:8080",
    .direction = "outbound",
    .start_ms = 1700000000123ull,
    .duration_ms = 42,
    .sent = 100,
    .received = 7,
};

static void labels(void **state)
{
    (void)state;
    const char *v[VEIL_NODE_TCP_NLABELS];
    veil_node_tcp_label_values(&out, v);
    assert_string_equal(v[0], "source");
    assert_string_equal(v[3], "spiffe://cluster.local/ns/default/sa/client");
    assert_string_equal(v[7], "web.default.svc.cluster.local");
    assert_string_equal(v[8], "mutual_tls");
    assert_string_equal(v[9], "-");
    struct veil_node_conn_info none = {.reporter = "destination"};
    veil_node_tcp_label_values(&none, v);
    assert_string_equal(v[1], "unknown");
    assert_string_equal(v[8], "none");
    /* The names render as Istio's. */
    static const char *const names[] = {VEIL_NODE_TCP_LABELS};
    struct veil_metrics *m = veil_metrics_new();
    struct veil_metrics_family *f = veil_metrics_counter(m, "istio_tcp_connections_opened_total",
                                                         "opened", VEIL_NODE_TCP_NLABELS, names);
    veil_node_tcp_label_values(&out, v);
    veil_metrics_counter_add(veil_metrics_series(f, v), 1);
    char *text;
    size_t len;
    assert_int_equal(veil_metrics_render(m, &text, &len), 0);
    assert_non_null(strstr(text,
                           "istio_tcp_connections_opened_total{reporter=\"source\","
                           "source_workload=\"client\",source_workload_namespace=\"default\","));
    assert_non_null(
        strstr(text, "connection_security_policy=\"mutual_tls\",response_flags=\"-\"} 1"));
    veil_free(text);
    veil_metrics_free(m);
}

static void access_log(void **state)
{
    (void)state;
    char line[2048];
    int n = veil_node_access_log_line(&out, line, sizeof(line));
    assert_true(n > 0);
    assert_int_equal(line[n - 1], '\n');
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "start")), "2023-11-14T22:13:20.123Z");
    assert_int_equal(json_integer_value(json_object_get(j, "duration_ms")), 42);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes_sent")), 100);
    assert_string_equal(json_string_value(json_object_get(j, "security")), "mutual_tls");
    assert_string_equal(json_string_value(json_object_get(j, "dst_service")),
                        "web.default.svc.cluster.local");
    assert_true(json_is_null(json_object_get(j, "reason")));
    json_decref(j);
    assert_int_equal(veil_node_access_log_line(&out, line, 10), -ENOBUFS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(labels),
        cmocka_unit_test(access_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
