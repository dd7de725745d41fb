package builds

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// crockford is Crockford's base32 alphabet in lower case: ids sort by time as strings.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

var idState struct {
	sync.Mutex
	lastMS uint64
	seq    uint16
}

// NewID returns a 26-character id in the shape of a ULID: 48 bits of
// milliseconds, then 80 bits of which the first 16 count up within one
// millisecond, so ids made by one process sort in creation order.
func NewID(now time.Time) string {
	ms := uint64(now.UnixMilli())
	idState.Lock()
	if ms <= idState.lastMS {
		ms = idState.lastMS
		idState.seq++
		if idState.seq == 0 { // 65536 ids in one millisecond: borrow the next one
			ms++
		}
	} else {
		idState.seq = 0
	}
	idState.lastMS = ms
	seq := idState.seq
	idState.Unlock()

	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], ms<<16)
	binary.BigEndian.PutUint16(b[6:8], seq)
	_, _ = rand.Read(b[8:])
	// 128 bits → 26 base32 characters (the first carries 3 bits).
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	out := make([]byte, 26)
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}

// ValidID reports whether s looks like an id NewID made.
func ValidID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(crockford, s[i]) < 0 {
			return false
		}
	}
	return true
}
