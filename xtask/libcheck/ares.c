/* One c-ares lookup, for `cargo xtask client-check`: built against Debian's libc-ares.
 * Usage: ares NAME unspec|inet|inet6 [getaddrinfo|gethostbyname]
 * getaddrinfo (default): ares_getaddrinfo with the family (Envoy, Node's dns.lookup with c-ares);
 * gethostbyname: ares_gethostbyname, AF_INET6 then AF_INET for unspec as pgbouncer's older code.
 * The channel reads /etc/resolv.conf as the library does (ares_init).
 * Prints one address per line, or "error ARES_..." for the application's error. */
#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>

static int done;

static const char *err_name(int status) {
    switch (status) {
    case ARES_ENODATA: return "ARES_ENODATA";
    case ARES_ENOTFOUND: return "ARES_ENOTFOUND";
    case ARES_ETIMEOUT: return "ARES_ETIMEOUT";
    case ARES_ESERVFAIL: return "ARES_ESERVFAIL";
    case ARES_ECONNREFUSED: return "ARES_ECONNREFUSED";
    case ARES_EBADRESP: return "ARES_EBADRESP";
    case ARES_EREFUSED: return "ARES_EREFUSED";
    default: return "ARES_EOTHER";
    }
}

static void print_addr(int family, const void *addr) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(family, addr, buf, sizeof buf);
    printf("%s\n", buf);
}

/* Ends the lookup; prints the error, if any, and returns nonzero when there was one. */
static int finish(int status) {
    done = 1;
    if (status != ARES_SUCCESS) printf("error %s\n", err_name(status));
    return status != ARES_SUCCESS;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res) {
    (void)arg;
    (void)timeouts;
    if (finish(status)) return;
    for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next) {
        if (n->ai_family == AF_INET)
            print_addr(AF_INET, &((struct sockaddr_in *)n->ai_addr)->sin_addr);
        else
            print_addr(AF_INET6, &((struct sockaddr_in6 *)n->ai_addr)->sin6_addr);
    }
    ares_freeaddrinfo(res);
}

static void on_host(void *arg, int status, int timeouts, struct hostent *h) {
    (void)arg;
    (void)timeouts;
    if (finish(status)) return;
    for (char **a = h->h_addr_list; *a; a++) print_addr(h->h_addrtype, *a);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ares NAME unspec|inet|inet6 [getaddrinfo|gethostbyname]\n");
        return 2;
    }
    int family = !strcmp(argv[2], "inet") ? AF_INET : !strcmp(argv[2], "inet6") ? AF_INET6 : AF_UNSPEC;
    int byname = argc > 3 && !strcmp(argv[3], "gethostbyname");
    ares_channel ch;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS || ares_init(&ch) != ARES_SUCCESS) {
        fprintf(stderr, "ares: init failed\n");
        return 1;
    }
    if (byname) {
        ares_gethostbyname(ch, argv[1], family, on_host, NULL);
    } else {
        struct ares_addrinfo_hints hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = family;
        ares_getaddrinfo(ch, argv[1], NULL, &hints, on_addrinfo, NULL);
    }
    while (!done) {
        fd_set r, w;
        FD_ZERO(&r);
        FD_ZERO(&w);
        int nfds = ares_fds(ch, &r, &w);
        if (nfds == 0) break;
        struct timeval tv, *tvp = ares_timeout(ch, NULL, &tv);
        select(nfds, &r, &w, NULL, tvp);
        ares_process(ch, &r, &w);
    }
    ares_destroy(ch);
    ares_library_cleanup();
    return 0;
}
