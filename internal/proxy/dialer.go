package proxy

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"time"

	"warden"
)

// blocked lists address ranges Warden never dials for a connector unless the
// connector sets allow_private_network: loopback, private, carrier-grade
// NAT, link-local (which holds cloud metadata endpoints such as
// 169.254.169.254), unique-local, multicast and unspecified addresses.
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
		"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96", "2001:db8::/32",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// PublicAddr reports whether ip is an address a connector may reach without
// allow_private_network.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// dialer returns a DialContext that checks the address actually being
// connected to (after DNS resolution, so DNS rebinding cannot slip a private
// address in) against the policy.
func dialer(allowPrivate bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			if allowPrivate {
				return nil
			}
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return warden.Errorf(warden.CodeForbidden, "refusing to dial %q", address)
			}
			if !PublicAddr(ap.Addr()) {
				return warden.Errorf(warden.CodeForbidden, "refusing to dial private or local address %s (set allow_private_network on the connector to allow it)", ap.Addr())
			}
			return nil
		},
	}
	return d.DialContext
}
