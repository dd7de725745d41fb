package explore

import "testing"

func TestInstructionExecForm(t *testing.T) {
	tests := []struct{ in, want string }{
		{`CMD ["cat" "/app/a"]`, `CMD ["cat", "/app/a"]`},
		{`CMD ["/bin/sh" "-c" "while date; do sleep 1; done;"]`, `CMD ["/bin/sh", "-c", "while date; do sleep 1; done;"]`},
		{`ENTRYPOINT ["say \"hi\"" "a\\b"] # buildkit`, `ENTRYPOINT ["say \"hi\"", "a\\b"]`},
		{`CMD ["already", "json"]`, `CMD ["already", "json"]`},
		{`CMD []`, `CMD []`},
		{`CMD echo hi`, `CMD echo hi`},
		{`LABEL a=["b" "c"]`, `LABEL a=["b" "c"]`},
		{`CMD ["broken`, `CMD ["broken`},
		{`/bin/sh -c #(nop)  CMD ["sh"]`, `CMD ["sh"]`},
		{`RUN /bin/sh -c echo hi # buildkit`, `RUN echo hi`},
	}
	for _, tt := range tests {
		if got := instruction(tt.in); got != tt.want {
			t.Errorf("instruction(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
