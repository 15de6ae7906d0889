package config

import (
	"net/url"
)

// Freeze makes a log read-only: the last step of retiring a tree
// (deployment/README.md, "Freezing a tree and starting a new one"). A
// frozen log refuses every write with 403 Forbidden, in its API's error
// shape and naming Successor, while its entries, proofs, tiles and
// checkpoints are served as before and its witnesses keep cosigning; its
// readiness is unaffected. The metric logserver_log_frozen{log} is 1, and
// the trust files say so: trusted_root.json ends the log's validity one
// second after its last entry was integrated (its tree's creation if it is
// empty) and signing_config.json no longer offers it for writing (unless
// every log is frozen: then each is listed with that end, so no client
// picks one). Unfreezing (frozen: false and a restart) takes writes again.
type Freeze struct {
	// Frozen refuses every write to the log. Default false.
	Frozen bool `yaml:"frozen"`
	// Successor is the base URL of the log that takes the writes instead
	// (e.g. https://rekor2.example), named in every refusal. Optional;
	// only with frozen.
	Successor string `yaml:"successor"`
}

// validate checks f, named name in errors.
func (f *Freeze) validate(name string, bad func(string, ...any)) {
	if f.Successor == "" {
		return
	}
	if !f.Frozen {
		bad("%s.successor is set but %s.frozen is not", name, name)
	}
	if u, err := url.Parse(f.Successor); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("%s.successor %q: want an http(s) URL", name, f.Successor)
	}
}
