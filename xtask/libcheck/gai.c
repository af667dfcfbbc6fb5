/* One getaddrinfo() call, for `cargo xtask client-check`: built against glibc (gcc) and musl
 * (musl-gcc). Usage: gai NAME unspec|inet|inet6 [addrconfig,v4mapped,all,canonname]
 * Prints one address per line, or "error EAI_..." for the application's error. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: gai NAME unspec|inet|inet6 [FLAGS]\n");
        return 2;
    }
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = !strcmp(argv[2], "inet") ? AF_INET : !strcmp(argv[2], "inet6") ? AF_INET6 : AF_UNSPEC;
    if (argc > 3) {
        if (strstr(argv[3], "addrconfig")) hints.ai_flags |= AI_ADDRCONFIG;
        if (strstr(argv[3], "v4mapped")) hints.ai_flags |= AI_V4MAPPED;
        if (strstr(argv[3], "all")) hints.ai_flags |= AI_ALL;
        if (strstr(argv[3], "canonname")) hints.ai_flags |= AI_CANONNAME;
    }
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        const char *n = rc == EAI_NONAME ? "EAI_NONAME"
                      : rc == EAI_AGAIN  ? "EAI_AGAIN"
                      : rc == EAI_FAIL   ? "EAI_FAIL"
#ifdef EAI_NODATA
                      : rc == EAI_NODATA ? "EAI_NODATA"
#endif
                      : "EAI_OTHER";
        printf("error %s\n", n);
        return 0;
    }
    char buf[INET6_ADDRSTRLEN];
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, buf, sizeof buf);
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, buf, sizeof buf);
        printf("%s\n", buf);
    }
    freeaddrinfo(res);
    return 0;
}
