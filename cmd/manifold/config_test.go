package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		err   string
		check func(config) bool
	}{
		{name: "defaults", check: func(c config) bool {
			return c.Addr == ":8080" && c.Concurrency == 2 && c.MaxQueued == 10 && c.GCInterval == time.Hour && c.Context.MaxFiles == 100_000 && c.BuildNetwork == "bridge"
		}},
		{name: "environment", env: map[string]string{"MANIFOLD_CONCURRENCY": "3", "MANIFOLD_GC_INTERVAL": "5m", "MANIFOLD_ANONYMOUS_PULL": "true", "MANIFOLD_RETAIN_DAYS": "2"},
			check: func(c config) bool {
				return c.Concurrency == 3 && c.GCInterval == 5*time.Minute && c.AnonPull && c.Retention.MaxAge == 48*time.Hour
			}},
		{name: "a flag beats the environment", args: []string{"--concurrency", "4"}, env: map[string]string{"MANIFOLD_CONCURRENCY": "3"},
			check: func(c config) bool { return c.Concurrency == 4 }},
		{name: "a bad number in the environment", env: map[string]string{"MANIFOLD_MAX_QUEUED_PER_USER": "ten"}, err: `MANIFOLD_MAX_QUEUED_PER_USER="ten" is not a number`},
		{name: "a bad duration in the environment", env: map[string]string{"MANIFOLD_SESSION_IDLE": "forever"}, err: `MANIFOLD_SESSION_IDLE="forever" is not a duration`},
		{name: "concurrency out of range", args: []string{"--concurrency", "0"}, err: "--concurrency 0 must be from 1 to 64"},
		{name: "a bad address", args: []string{"--addr", "8080"}, err: `--addr "8080" is not host:port`},
		{name: "TLS without tcp", args: []string{"--buildkit-tls-ca", "ca.pem"}, err: "need --buildkit tcp://"},
		{name: "a bad log level", args: []string{"--log-level", "loud"}, err: `--log-level "loud"`},
		{name: "stray arguments", args: []string{"extra"}, err: `unexpected arguments ["extra"]`},
		{name: "negative retention", args: []string{"--retain-days", "-1"}, err: "cannot be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, new(strings.Builder))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || !tt.check(cfg) {
				t.Fatalf("config %+v, error %v", cfg, err)
			}
		})
	}
}
