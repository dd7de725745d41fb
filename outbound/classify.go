package outbound

import "net/netip"

// Why an address is refused; each reads after "is".
const (
	reasonUnspecified = "the unspecified address (it stands for this machine)"
	reasonLoopback    = "a loopback address"
	reasonMetadata    = "a link-local address (the cloud metadata service lives there)"
	reasonLinkLocal   = "a link-local address"
	reasonPrivate     = "a private-network address"
	reasonMulticast   = "a multicast address"
	reasonReserved    = "a reserved address, not a public one"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

var (
	privateNets = prefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
	// Special-purpose ranges (IANA registries) that are not public unicast.
	reservedNets = prefixes(
		"0.0.0.0/8", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
		"100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "64:ff9b:1::/48",
	)
	metadata = netip.MustParseAddr("169.254.169.254")
	// IPv6 ranges that carry an IPv4 address: NAT64 (its last 32 bits) and 6to4 (bits 16–48).
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	global6   = netip.MustParsePrefix("2000::/3")
)

// classify says why a (normalised) address is refused, or "" when it is a
// public unicast address that may be reached.
func classify(a netip.Addr) string {
	a = unwrap(a)
	switch {
	case a.IsUnspecified():
		return reasonUnspecified
	case a.IsLoopback():
		return reasonLoopback
	case a == metadata:
		return reasonMetadata
	case a.IsLinkLocalUnicast():
		return reasonLinkLocal
	case a.IsMulticast():
		return reasonMulticast
	}
	for _, p := range privateNets {
		if p.Contains(a) {
			return reasonPrivate
		}
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			return classify(netip.AddrFrom4([4]byte(b[12:])))
		case sixToFour.Contains(a):
			if r := classify(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
				return r
			}
		}
	}
	for _, p := range reservedNets {
		if p.Contains(a) {
			return reasonReserved
		}
	}
	if !a.IsGlobalUnicast() || a.Is6() && !global6.Contains(a) || a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return reasonReserved
	}
	return ""
}
