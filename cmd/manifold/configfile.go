package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// configFileFlag names the flag (and MANIFOLD_CONFIG the variable) that points at the TOML file.
const configFileFlag = "config"

// configFilePath finds --config in args (before any "--"), else MANIFOLD_CONFIG.
// It is read before the flags are registered, because the file gives their defaults.
func configFilePath(args []string, getenv func(string) string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, p := range []string{"--" + configFileFlag, "-" + configFileFlag} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return getenv("MANIFOLD_CONFIG")
}

// readConfigFile reads a TOML file whose top-level keys are flag names
// (`concurrency = 4`, `allow-hosts = ["a:5000", "b"]`) into flag values.
func readConfigFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := toml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	out := make(map[string]string, len(raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := configValue(raw[k])
		if err != nil {
			return nil, fmt.Errorf("config file %s: key %q %v", path, k, err)
		}
		out[k] = v
	}
	return out, nil
}

// configValue turns one TOML value into the text its flag parses.
func configValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case bool:
		return strconv.FormatBool(v), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("is a list of %T; lists hold strings only", e)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", fmt.Errorf("is a table; the keys are the flag names of manifold serve, at the top level")
	}
	return "", fmt.Errorf("is a %T; use a string, an integer, a boolean or a list of strings", v)
}

// unknownConfigKey names the first key of the file that no flag has.
func (f *envFlags) unknownConfigKey() error {
	keys := make([]string, 0, len(f.file))
	for k := range f.file {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == configFileFlag || f.Lookup(k) == nil {
			return fmt.Errorf("config file %s: unknown key %q (the keys are the flag names of manifold serve -h, without dashes in front)", f.fileName, k)
		}
	}
	return nil
}
