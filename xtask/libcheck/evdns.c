/* One libevent evdns lookup, for `cargo xtask client-check`: built against Debian's libevent.
 * Usage: evdns NAME unspec|inet|inet6 [getaddrinfo|resolve]
 * getaddrinfo (default): evdns_getaddrinfo with the family and SOCK_STREAM, as pgbouncer's evdns
 * backend calls it; resolve: evdns_base_resolve_ipv4 (inet) or _ipv6 (inet6) with the search list.
 * The base reads /etc/resolv.conf as the library does (EVDNS_BASE_INITIALIZE_NAMESERVERS).
 * Prints one address per line, or "error NAME" for the application's error. */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <string.h>

static struct event_base *base;

static const char *gai_err(int e) {
    switch (e) {
    case EVUTIL_EAI_NONAME: return "EVUTIL_EAI_NONAME";
    case EVUTIL_EAI_NODATA: return "EVUTIL_EAI_NODATA";
    case EVUTIL_EAI_AGAIN: return "EVUTIL_EAI_AGAIN";
    case EVUTIL_EAI_FAIL: return "EVUTIL_EAI_FAIL";
    default: return "EVUTIL_EAI_OTHER";
    }
}

static const char *dns_err(int e) {
    switch (e) {
    case DNS_ERR_NOTEXIST: return "DNS_ERR_NOTEXIST";
    case DNS_ERR_SERVERFAILED: return "DNS_ERR_SERVERFAILED";
    case DNS_ERR_TIMEOUT: return "DNS_ERR_TIMEOUT";
    case DNS_ERR_TRUNCATED: return "DNS_ERR_TRUNCATED";
    case DNS_ERR_REFUSED: return "DNS_ERR_REFUSED";
    case DNS_ERR_FORMAT: return "DNS_ERR_FORMAT";
    case DNS_ERR_NOTIMPL: return "DNS_ERR_NOTIMPL";
    case DNS_ERR_NODATA: return "DNS_ERR_NODATA";
    default: return "DNS_ERR_OTHER";
    }
}

static void print_addr(int family, const void *addr) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(family, addr, buf, sizeof buf);
    printf("%s\n", buf);
}

/* Prints the error, if any, and ends the loop; nonzero when there was one. */
static int finish(const char *err) {
    event_base_loopexit(base, NULL);
    if (err) printf("error %s\n", err);
    return err != NULL;
}

static void on_addrinfo(int err, struct evutil_addrinfo *res, void *arg) {
    (void)arg;
    if (finish(err ? gai_err(err) : NULL)) return;
    for (struct evutil_addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET)
            print_addr(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr);
        else
            print_addr(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
    }
    evutil_freeaddrinfo(res);
}

static void on_resolve(int result, char type, int count, int ttl, void *addrs, void *arg) {
    (void)ttl;
    (void)arg;
    if (finish(result != DNS_ERR_NONE ? dns_err(result) : NULL)) return;
    for (int i = 0; i < count; i++) {
        if (type == DNS_IPv4_A)
            print_addr(AF_INET, (char *)addrs + 4 * i);
        else if (type == DNS_IPv6_AAAA)
            print_addr(AF_INET6, (char *)addrs + 16 * i);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: evdns NAME unspec|inet|inet6 [getaddrinfo|resolve]\n");
        return 2;
    }
    int family = !strcmp(argv[2], "inet") ? AF_INET : !strcmp(argv[2], "inet6") ? AF_INET6 : AF_UNSPEC;
    int resolve = argc > 3 && !strcmp(argv[3], "resolve");
    base = event_base_new();
    struct evdns_base *dns = base ? evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
    if (!dns) {
        fprintf(stderr, "evdns: init failed\n");
        return 1;
    }
    if (resolve && family == AF_INET6) {
        evdns_base_resolve_ipv6(dns, argv[1], 0, on_resolve, NULL);
    } else if (resolve) {
        evdns_base_resolve_ipv4(dns, argv[1], 0, on_resolve, NULL);
    } else {
        struct evutil_addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = family;
        hints.ai_socktype = SOCK_STREAM;
        evdns_getaddrinfo(dns, argv[1], NULL, &hints, on_addrinfo, NULL);
    }
    event_base_dispatch(base);
    evdns_base_free(dns, 0);
    event_base_free(base);
    return 0;
}
