// Package outbound decides which network addresses Manifold and BuildKit may
// reach on a user's behalf: registries, git servers and URLs a build fetches.
// Loopback, link-local, private and other non-public addresses are refused,
// in every notation a URL parser would accept for them, unless an admin put
// the host on the allow-list (--allow-hosts).
package outbound

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Host is a host name or address as the policy sees it, after normalisation.
type Host struct {
	// Name is the host lower-cased, without brackets, zone or trailing dot;
	// for an address it is the address's canonical text ("127.0.0.1", "::1").
	Name string
	// Addr is set when the host is a numeric address in any notation
	// (2130706433, 0x7f.1, 0177.0.0.1, 127.1, [::ffff:127.0.0.1]); IPv4
	// addresses carried in IPv6 (mapped or compatible) are unwrapped to IPv4.
	Addr netip.Addr
}

// IsAddr reports whether the host is a numeric address rather than a name.
func (h Host) IsAddr() bool { return h.Addr.IsValid() }

// IsLocalhost reports whether the host is "localhost" or a name under
// ".localhost", which resolvers answer with loopback addresses (RFC 6761).
func (h Host) IsLocalhost() bool {
	return !h.IsAddr() && (h.Name == "localhost" || strings.HasSuffix(h.Name, ".localhost"))
}

// maxHost bounds a host name; DNS names are at most 253 characters.
const maxHost = 253

// ParseHost normalises a host (no port) the way inet_aton-style parsers
// (glibc, curl, git) and URL parsers read it: decimal, hex and octal parts,
// short dotted forms, a trailing dot, brackets, zones and IPv4 inside IPv6 all
// become the address they stand for. A name whose last label is a number but
// which is not an address, or that holds characters no host name has, is an error.
func ParseHost(s string) (Host, error) {
	bad := func(why string) (Host, error) {
		return Host{}, fmt.Errorf("%s %s", Quote(s), why)
	}
	if s == "" {
		return bad("is empty")
	}
	if len(s) > maxHost+2 {
		return bad("is too long for a host name")
	}
	h := strings.ToLower(s)
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return bad("has an unclosed '['")
		}
		a, ok := parseIPv6(h[1 : len(h)-1])
		if !ok {
			return bad("is not an IPv6 address in brackets")
		}
		return hostOf(a), nil
	}
	if strings.Contains(h, ":") {
		if a, ok := parseIPv6(h); ok {
			return hostOf(a), nil
		}
		return bad("is not a host name or address")
	}
	if strings.HasSuffix(h, ".") {
		h = h[:len(h)-1]
	}
	if h == "" {
		return bad("is not a host name or address")
	}
	if a, ok := parseIPv4Loose(h); ok {
		return hostOf(a), nil
	}
	labels := strings.Split(h, ".")
	if looksNumeric(labels[len(labels)-1]) {
		// A parser that reads numbers would take this for an address; it is not a valid one.
		return bad("looks like an address but is not a valid one")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("is not a host name or address")
		}
		if l[0] == '-' {
			return bad("has a part starting with '-'")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return bad("has characters a host name cannot have")
			}
		}
	}
	return Host{Name: h}, nil
}

func hostOf(a netip.Addr) Host {
	a = unwrap(a)
	return Host{Name: a.String(), Addr: a}
}

// unwrap drops a zone and turns IPv4-mapped (::ffff:a.b.c.d) and
// IPv4-compatible (::a.b.c.d) IPv6 addresses into the IPv4 address they carry.
func unwrap(a netip.Addr) netip.Addr {
	a = a.WithZone("")
	if a.Is4In6() {
		return a.Unmap()
	}
	if a.Is6() {
		b := a.As16()
		zero := true
		for _, x := range b[:12] {
			zero = zero && x == 0
		}
		if zero && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback() {
			return netip.AddrFrom4([4]byte(b[12:]))
		}
	}
	return a
}

// parseIPv6 reads an IPv6 address, with or without a zone ("%eth0", "%25eth0").
func parseIPv6(s string) (netip.Addr, bool) {
	if i := strings.IndexByte(s, '%'); i >= 0 {
		if i == len(s)-1 {
			return netip.Addr{}, false
		}
		s = s[:i]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

// parseIPv4Loose reads an IPv4 address as inet_aton does: one to four parts,
// each decimal, hex (0x…) or octal (leading 0); the last part fills the bytes
// that are left ("127.1" is 127.0.0.1, "2130706433" is 127.0.0.1).
func parseIPv4Loose(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := parseNumber(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	n := len(parts)
	var ip uint64
	for i := 0; i < n-1; i++ {
		if vals[i] > 255 {
			return netip.Addr{}, false
		}
		ip |= vals[i] << (24 - 8*i)
	}
	if vals[n-1] >= uint64(1)<<(8*(5-n)) {
		return netip.Addr{}, false
	}
	ip |= vals[n-1]
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// parseNumber reads one part of a loose IPv4 address.
func parseNumber(p string) (uint64, bool) {
	base := 10
	switch {
	case p == "":
		return 0, false
	case strings.HasPrefix(p, "0x"):
		base, p = 16, p[2:]
		if p == "" {
			return 0, true // "0x" alone is 0 to glibc and to URL parsers
		}
	case len(p) > 1 && p[0] == '0':
		base, p = 8, p[1:]
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		ok := c >= '0' && c <= '9' || base == 16 && (c >= 'a' && c <= 'f')
		if !ok || base == 8 && c > '7' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(p, base, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// looksNumeric reports whether a label is a number in any base, the WHATWG
// URL rule for "this host ends in a number, so it must be an IPv4 address".
func looksNumeric(l string) bool {
	if l == "" {
		return false
	}
	if strings.HasPrefix(l, "0x") {
		for i := 2; i < len(l); i++ {
			c := l[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// Quote shows a piece of input in a message: as written when it is plain, in
// Go quotes when it holds anything else, and at most 100 characters either way.
func Quote(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	clipped := false
	if r := []rune(s); len(r) > 100 {
		s, clipped = string(r[:100]), true
	}
	plain := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-_:[]%/@", c)) {
			plain = false
			break
		}
	}
	if !plain {
		s = strconv.Quote(s)
	}
	if clipped {
		s += "…"
	}
	return s
}
