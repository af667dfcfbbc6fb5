// One lookup through Go's resolver, for `cargo xtask client-check`. GODEBUG=netdns=go or netdns=cgo
// picks the native or the cgo resolver. Usage: lookup NAME ip|ip4|ip6
// Prints one address per line, or "error notfound|timeout|other".
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: lookup NAME ip|ip4|ip6")
		os.Exit(2)
	}
	ips, err := net.DefaultResolver.LookupIP(context.Background(), os.Args[2], os.Args[1])
	if err != nil {
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			fmt.Println("error notfound")
		case errors.As(err, &de) && (de.IsTimeout || de.IsTemporary):
			fmt.Println("error timeout")
		default:
			fmt.Println("error other:", err)
		}
		return
	}
	for _, ip := range ips {
		fmt.Println(ip.String())
	}
}
