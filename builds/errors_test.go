package builds

import (
	"strings"
	"testing"
)

func TestErrorsQuoteAtMost100Characters(t *testing.T) {
	long := strings.Repeat("é", 1<<20)
	tests := []struct {
		name string
		err  *Error
		want string
		max  int
	}{
		{"quoted", CodeErrorf(EInvalid, "invalid_tag", "tag %q is not valid", long), `tag "` + strings.Repeat("é", 100) + `"… (1048576 characters) is not valid`, 300},
		{"short quoted", Errorf(EInvalid, "tag %q is not valid", "a:b"), `tag "a:b" is not valid`, 100},
		{"unquoted long text is cut", Errorf(EInvalid, "%s", long), "", maxMessage + 4},
		{"width verbs still work", Errorf(EInvalid, "%5s|", strings.Repeat("x", 101)), strings.Repeat("x", 101) + "|", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want != "" && tt.err.Message != tt.want {
				t.Errorf("message = %.200q, want %.200q", tt.err.Message, tt.want)
			}
			if len(tt.err.Message) > tt.max {
				t.Errorf("message is %d bytes, more than %d", len(tt.err.Message), tt.max)
			}
		})
	}
}
