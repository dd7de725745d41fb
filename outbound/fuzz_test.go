package outbound

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseHost: whatever a host looks like, the policy reads it as one
// address or one valid name, never as a name that some parser takes for an address.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.1", "127.0.1",
		"127.0.0.1.", "[::1]", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "[fe80::1%eth0]", "0", "0.0.0.0", "[::]",
		"LOCALHOST", "a.localhost", "registry.example.com", "1.2.3.4.5", "4294967296", "-x", "0x", "08", "[::127.0.0.1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHost(s)
		if err != nil {
			if len([]rune(err.Error())) > 600 {
				t.Fatalf("error for %q is %d bytes long", s, len(err.Error()))
			}
			return
		}
		again, err := ParseHost(h.Name)
		if err != nil || again != h {
			t.Fatalf("%q normalised to %+v, which reads back as %+v (%v)", s, h, again, err)
		}
		if h.IsAddr() {
			if h.Addr.Zone() != "" || h.Addr.Is4In6() || h.Addr.String() != h.Name {
				t.Fatalf("%q normalised to an address with a zone or IPv4 inside IPv6: %+v", s, h)
			}
		} else {
			// A name must be one no address parser reads as an address.
			if net.ParseIP(h.Name) != nil || strings.ContainsAny(h.Name, ":[]%/@ ") || h.Name != strings.ToLower(h.Name) || strings.HasSuffix(h.Name, ".") {
				t.Fatalf("%q normalised to the name %q", s, h.Name)
			}
			if _, err := netip.ParseAddr(h.Name); err == nil {
				t.Fatalf("%q normalised to the name %q, an address", s, h.Name)
			}
		}
		// Whatever Go's strict parsers read as an address, the policy reads as the same one.
		trimmed := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(s), "]"), "["), ".")
		if a, err := netip.ParseAddr(trimmed); err == nil && a.Zone() == "" {
			if !h.IsAddr() || h.Addr != unwrap(a) {
				t.Fatalf("%q is the address %s, the policy read %+v", s, a, h)
			}
		}
		// A refused address in any notation is refused without a lookup.
		var p *Policy
		if h.IsAddr() && classify(h.Addr) != "" && p.CheckLiteral(s, "") == nil {
			t.Fatalf("%q (%s) passed CheckLiteral", s, h.Addr)
		}
		if h.IsLocalhost() && p.CheckLiteral(s, "80") == nil {
			t.Fatalf("%q passed CheckLiteral", s)
		}
	})
}
