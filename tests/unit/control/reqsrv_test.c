#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/reqsrv.h"
#include "core/alloc.h"
#include "core/loop.h"

/* A request is a line; the response echoes it upper-cased. */
static size_t line_complete(const char *data, size_t len, int eof)
{
    const char *nl = memchr(data, '\n', len);
    if (nl != NULL)
        return (size_t)(nl - data) + 1;
    return eof ? len : 0;
}

static int upper_handle(void *ctx, const char *req, size_t len, char **resp, size_t *resp_len)
{
    (*(int *)ctx)++;
    *resp = veil_malloc(len);
    if (*resp == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        (*resp)[i] = (char)(req[i] >= 'a' && req[i] <= 'z' ? req[i] - 32 : req[i]);
    *resp_len = len;
    return 0;
}

struct client {
    struct sockaddr_storage sa;
    socklen_t sl;
    const char *send;
    size_t send_len;
    char got[256];
    struct veil_loop *loop;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    int fd = socket(c->sa.ss_family, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&c->sa, c->sl) == 0) {
        if (c->send_len > 0)
            (void)!write(fd, c->send, c->send_len);
        ssize_t n, off = 0;
        while ((n = read(fd, c->got + off, sizeof(c->got) - 1 - (size_t)off)) > 0)
            off += n;
        c->got[off] = '\0';
    }
    close(fd);
    veil_loop_stop(c->loop);
    return NULL;
}

static void run_client(struct veil_loop *loop, struct client *c)
{
    pthread_t th;
    c->loop = loop;
    pthread_create(&th, NULL, client_main, c);
    veil_loop_run(loop);
    pthread_join(th, NULL);
}

static void test_tcp_request_response(void **state)
{
    (void)state;
    struct veil_loop *loop = veil_loop_new("t");
    uint16_t port = 0;
    int fd = veil_listen_tcp("127.0.0.1", 0, &port);
    assert_true(fd >= 0 && port > 0);
    int handled = 0;
    struct veil_reqsrv_opts o = {line_complete, upper_handle, &handled, 64, 5000};
    struct veil_reqsrv *srv = veil_reqsrv_new(loop, fd, &o);
    assert_non_null(srv);

    struct client c = {.send = "hello\nrest", .send_len = 10};
    struct sockaddr_in *in = (struct sockaddr_in *)&c.sa;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &in->sin_addr);
    c.sl = sizeof(*in);
    run_client(loop, &c);
    assert_string_equal(c.got, "HELLO\n");
    assert_int_equal(handled, 1);

    /* Too large: refused and counted, nothing handled. */
    char big[200];
    memset(big, 'x', sizeof(big));
    c.send = big;
    c.send_len = sizeof(big);
    run_client(loop, &c);
    assert_string_equal(c.got, "");
    assert_int_equal(handled, 1);
    assert_int_equal(veil_reqsrv_refused(srv), 1);

    veil_reqsrv_free(srv);
    veil_loop_free(loop);
}

static void test_unix_socket_mode_and_timeout(void **state)
{
    (void)state;
    char dir[] = "/tmp/veil-reqsrv-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/control.sock", dir);
    int fd = veil_listen_unix(path, 0600);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    struct veil_loop *loop = veil_loop_new("t");
    int handled = 0;
    struct veil_reqsrv_opts o = {line_complete, upper_handle, &handled, 64, 100};
    struct veil_reqsrv *srv = veil_reqsrv_new(loop, fd, &o);

    struct client c = {.send = "abc", .send_len = 3}; /* no newline: answered at EOF? */
    struct sockaddr_un *un = (struct sockaddr_un *)&c.sa;
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, path);
    c.sl = sizeof(*un);
    /* The client keeps its side open and waits: the server times it out. */
    run_client(loop, &c);
    assert_string_equal(c.got, "");
    assert_int_equal(veil_reqsrv_refused(srv), 1);

    veil_reqsrv_free(srv);
    veil_loop_free(loop);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_request_response),
        cmocka_unit_test(test_unix_socket_mode_and_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
