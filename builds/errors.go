package builds

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error for the HTTP layer, which maps each kind to one status.
type Kind string

// Error kinds. The web layer maps them to statuses in one table.
const (
	EInvalid      Kind = "invalid"      // the caller's input is wrong: 400
	ENotFound     Kind = "not_found"    // no such thing: 404
	EConflict     Kind = "conflict"     // the thing is in the wrong state: 409
	EUnavailable  Kind = "unavailable"  // a dependency (BuildKit) cannot be reached: 503
	EUpstream     Kind = "upstream"     // another server (a registry) refused or failed: 502
	EUnauthorized Kind = "unauthorized" // no valid login: 401
	EForbidden    Kind = "forbidden"    // logged in, but not allowed: 403
	ETooMany      Kind = "too_many"     // rate limited or locked out: 429
	EMediaType    Kind = "media_type"   // the body is not of a type the route reads: 415
	EMethod       Kind = "method"       // the route does not take this method: 405
	EInternal     Kind = "internal"     // a bug or an unexpected failure: 500
)

// Error is an error with a kind, a machine-readable code and a message that is
// safe to show to the user.
type Error struct {
	Kind    Kind
	Code    string // e.g. "invalid_platform"; defaults to the kind
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error of the given kind whose code is the kind itself.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: string(kind), Message: message(format, args)}
}

// CodeErrorf returns an *Error with a specific code, such as "invalid_platform".
func CodeErrorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: message(format, args)}
}

// Limits on what an error message echoes back: input is quoted with %q by
// convention, and a quoted string shows at most maxQuoted characters; the
// wrapped error is cut at maxWrapped bytes, and the whole message at maxMessage.
const (
	maxQuoted  = 100
	maxWrapped = 300 // a wrapped error's text
	maxMessage = 2000
)

// message formats an error message so that no input, however long, is echoed whole.
func message(format string, args []any) string {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			if len(v) > maxQuoted {
				args[i] = clipped(v)
			}
		case error:
			// A wrapped parser error often repeats the input it refused.
			if m := v.Error(); len(m) > maxWrapped {
				args[i] = strings.ToValidUTF8(m[:maxWrapped], "") + "…"
			}
		}
	}
	m := fmt.Sprintf(format, args...)
	if len(m) > maxMessage {
		m = strings.ToValidUTF8(m[:maxMessage], "") + "…"
	}
	return m
}

// clipped is a long string argument: quoted (%q) it shows its first
// maxQuoted characters and how long it was; other verbs print it whole.
type clipped string

func (c clipped) Format(f fmt.State, verb rune) {
	if verb != 'q' {
		fmt.Fprintf(f, fmt.FormatString(f, verb), string(c))
		return
	}
	n := len([]rune(string(c)))
	fmt.Fprintf(f, "%q… (%d characters)", truncateRunes(string(c), maxQuoted), n)
}

// truncateRunes cuts s to at most n runes.
func truncateRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// ErrorKind returns the kind of err, or EInternal when err carries none.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return EInternal
}

// ErrorCode returns the code of err, or "internal" when err carries none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return string(EInternal)
}

// ErrorMessage returns the user-facing message of err; errors without a kind
// are internal and their details are not shown.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
