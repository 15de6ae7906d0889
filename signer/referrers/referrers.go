// Package referrers checks the release integrity of a scanner image
// before the signer signs what that scanner produced: it looks up the
// image's OCI referrers (OCI distribution spec 1.1 Referrers API, with the
// spec's tag-schema fallback) in the site's registry, and verifies the
// DSSE envelopes found there (sigstore bundles v0.3 or bare envelopes)
// against the configured trusted scanner release keys. A referrer counts
// when its envelope verifies with a trusted key and its in-toto statement
// names the image's digest as a subject.
//
// Verdicts: "trusted" (a verified referrer; Signers names the keys),
// "allow-listed" (the digest is in the allow-list of trusted scanner
// digests; no registry lookup), "untrusted" (referrers exist, none
// verifies), "missing" (the image has no referrers, or is not in any
// configured repository). A registry that cannot answer is an error, not
// a verdict. Verdicts are cached for Config.CacheTTL.
//
// A Verifier is safe for concurrent use.
package referrers

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/dsse"
)

// Verdicts.
const (
	Trusted     = "trusted"
	AllowListed = "allow-listed"
	Untrusted   = "untrusted"
	Missing     = "missing"
)

// Media and artifact types of the referrers examined.
const (
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	DSSEMediaType   = "application/vnd.dsse.envelope.v1+json"
)

var examined = []string{BundleMediaType, "application/vnd.dev.sigstore.bundle+json;version=0.3", DSSEMediaType}

// ErrRegistry wraps registry failures (unreachable, 5xx, bad answers).
var ErrRegistry = errors.New("referrers: registry lookup failed")

// ErrBadDigest is returned for a digest that is not sha256:<64 hex>.
var ErrBadDigest = errors.New("referrers: digest must be sha256:<64 lowercase hex digits>")

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Config is the releases section of the signer configuration.
type Config struct {
	// Repositories are the scanner image repositories, "host[:port]/path"
	// (e.g. "registry.stella.local/stella/scanner"). A bare digest is
	// looked up in each, in order; a producer image must be in one.
	Repositories []string `yaml:"repositories"`
	// PlainHTTP talks HTTP, not HTTPS, to the registry (labs only).
	PlainHTTP bool `yaml:"plain_http"`
	// CAFile holds the CA certificates of the registry's TLS certificate
	// (default: the system pool).
	CAFile string `yaml:"ca_file"`
	// TrustedKeys are the scanner release keys. Name is the signer
	// identity reported in verdicts.
	TrustedKeys []TrustedKey `yaml:"trusted_keys"`
	// TrustedDigests is the allow-list: scanner image digests trusted
	// without a referrer lookup (e.g. a scanner built on site).
	TrustedDigests []string `yaml:"trusted_digests"`
	// CacheTTL is how long a verdict is reused. Default 5 min.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// Timeout bounds one verification (all registry calls). Default 10 s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxApproval bounds a manual approval's lifetime. Default 7 days.
	MaxApproval time.Duration `yaml:"max_approval"`
}

// TrustedKey is a scanner release public key (PEM, ECDSA P-256 or Ed25519).
type TrustedKey struct {
	Name          string `yaml:"name"`
	PublicKeyFile string `yaml:"public_key_file"`
	PublicKey     string `yaml:"public_key"`
}

// Validate fills defaults and checks c (it reads the key files).
func (c *Config) Validate() error {
	if c.CacheTTL <= 0 {
		c.CacheTTL = 5 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxApproval <= 0 {
		c.MaxApproval = 7 * 24 * time.Hour
	}
	var errs []error
	if len(c.Repositories) == 0 {
		errs = append(errs, errors.New("releases: no repositories"))
	}
	for _, r := range c.Repositories {
		if _, err := remote.NewRepository(r); err != nil || strings.ContainsAny(r, "@") || !strings.Contains(r, "/") {
			errs = append(errs, fmt.Errorf("releases: repository %q: want host[:port]/path", r))
		}
	}
	if len(c.TrustedKeys) == 0 && len(c.TrustedDigests) == 0 {
		errs = append(errs, errors.New("releases: neither trusted_keys nor trusted_digests: nothing could pass"))
	}
	for i, k := range c.TrustedKeys {
		if k.Name == "" {
			errs = append(errs, fmt.Errorf("releases: trusted_keys[%d]: no name", i))
		}
		if _, err := k.load(); err != nil {
			errs = append(errs, fmt.Errorf("releases: trusted key %q: %w", k.Name, err))
		}
	}
	for _, d := range c.TrustedDigests {
		if !digestRE.MatchString(d) {
			errs = append(errs, fmt.Errorf("releases: trusted digest %q: %w", d, ErrBadDigest))
		}
	}
	if c.CAFile != "" {
		if _, err := os.ReadFile(c.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("releases: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (k TrustedKey) load() (crypto.PublicKey, error) {
	text := []byte(k.PublicKey)
	if (k.PublicKeyFile == "") == (k.PublicKey == "") {
		return nil, errors.New("set exactly one of public_key_file and public_key")
	}
	if k.PublicKeyFile != "" {
		var err error
		if text, err = os.ReadFile(k.PublicKeyFile); err != nil {
			return nil, err
		}
	}
	b, _ := pem.Decode(text)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM PUBLIC KEY")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	if _, err := dsse.KeyID(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// Verdict is the answer for one image digest (the API's wire type).
type Verdict = api.ReleaseVerdict

// Referrer is one referrer examined.
type Referrer = api.ReleaseReferrer

// Verifier checks images; create it with [New].
type Verifier struct {
	cfg   Config
	keys  []namedKey
	hc    *http.Client
	now   func() time.Time
	mu    sync.Mutex
	cache map[string]*Verdict
}

type namedKey struct {
	name string
	pub  crypto.PublicKey
}

// New builds a Verifier from a validated Config; now nil is time.Now.
func New(cfg Config, now func() time.Time) (*Verifier, error) {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{cfg: cfg, now: now, cache: map[string]*Verdict{}}
	for _, k := range cfg.TrustedKeys {
		pub, err := k.load()
		if err != nil {
			return nil, fmt.Errorf("releases: trusted key %q: %w", k.Name, err)
		}
		v.keys = append(v.keys, namedKey{k.Name, pub})
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("releases: no certificate in %s", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	v.hc = &http.Client{Transport: tr}
	return v, nil
}

// CheckDigest validates the form of a digest.
func CheckDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("%w: %q", ErrBadDigest, d)
	}
	return nil
}

// SplitImage splits "repo@sha256:…" into repository and digest. An image
// outside the configured repositories verifies as "missing".
func SplitImage(image string) (repo, digest string, err error) {
	repo, digest, ok := strings.Cut(image, "@")
	if !ok {
		return "", "", fmt.Errorf("%w: image %q is not named by digest", ErrBadDigest, image)
	}
	if err := CheckDigest(digest); err != nil {
		return "", "", err
	}
	return repo, digest, nil
}

// Verify returns the verdict for digest, looked up in repo (or, when repo
// is "", in each configured repository until one knows the image).
func (v *Verifier) Verify(ctx context.Context, repo, digest string) (*Verdict, error) {
	if err := CheckDigest(digest); err != nil {
		return nil, err
	}
	now := v.now()
	if slices.Contains(v.cfg.TrustedDigests, digest) {
		return &Verdict{Digest: digest, Repository: repo, Verdict: AllowListed, Trusted: true, CheckedAt: now.UTC()}, nil
	}
	key := repo + "@" + digest
	v.mu.Lock()
	c := v.cache[key]
	v.mu.Unlock()
	if c != nil && now.Sub(c.CheckedAt) < v.cfg.CacheTTL {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	repos := v.cfg.Repositories
	if repo != "" {
		repos = nil
		if slices.Contains(v.cfg.Repositories, repo) {
			repos = []string{repo}
		}
	}
	verdict := &Verdict{Digest: digest, Repository: repo, Verdict: Missing, CheckedAt: now.UTC()}
	for _, r := range repos {
		got, found, err := v.verifyIn(ctx, r, digest)
		if err != nil {
			return nil, err
		}
		if found {
			verdict = got
			verdict.CheckedAt = now.UTC()
			break
		}
	}
	v.mu.Lock()
	v.cache[key] = verdict
	v.mu.Unlock()
	return verdict, nil
}

// verifyIn looks the image up in one repository; found is false when the
// repository does not hold it.
func (v *Verifier) verifyIn(ctx context.Context, repoName, digest string) (*Verdict, bool, error) {
	repo, err := remote.NewRepository(repoName)
	if err != nil {
		return nil, false, fmt.Errorf("%w: repository %q: %v", ErrRegistry, repoName, err)
	}
	repo.PlainHTTP = v.cfg.PlainHTTP
	repo.Client = &auth.Client{Client: v.hc, Cache: auth.NewCache()}
	subject, err := repo.Resolve(ctx, digest)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s@%s: %v", ErrRegistry, repoName, digest, err)
	}
	var refs []ocispec.Descriptor
	if err := repo.Referrers(ctx, subject, "", func(page []ocispec.Descriptor) error {
		refs = append(refs, page...)
		if len(refs) > maxReferrers {
			return fmt.Errorf("more than %d referrers", maxReferrers)
		}
		return nil
	}); err != nil {
		return nil, false, fmt.Errorf("%w: referrers of %s@%s: %v", ErrRegistry, repoName, digest, err)
	}
	out := &Verdict{Digest: digest, Repository: repoName, Verdict: Missing}
	for _, d := range refs {
		r := Referrer{Digest: d.Digest.String(), ArtifactType: d.ArtifactType, Result: "skipped"}
		if slices.Contains(examined, d.ArtifactType) {
			signer, pt, err := v.checkReferrer(ctx, repo, d, digest)
			switch {
			case errors.Is(err, ErrRegistry):
				return nil, false, err
			case err != nil:
				r.Result, r.Problem = "rejected", err.Error()
			default:
				r.Result, r.Signer, r.PredicateType = "verified", signer, pt
				if !slices.Contains(out.Signers, signer) {
					out.Signers = append(out.Signers, signer)
				}
			}
			if out.Verdict == Missing {
				out.Verdict = Untrusted
			}
		}
		out.Referrers = append(out.Referrers, r)
	}
	if len(out.Signers) > 0 {
		out.Verdict, out.Trusted = Trusted, true
	}
	return out, true, nil
}

const (
	maxBlob      = 4 << 20
	maxManifest  = 1 << 20
	maxReferrers = 1000
)

// checkReferrer fetches a referrer's manifest and its layers, and returns
// the trusted key that signed an envelope about the image.
func (v *Verifier) checkReferrer(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, digest string) (signer, predicateType string, err error) {
	if desc.Size > maxManifest {
		return "", "", fmt.Errorf("manifest of %d bytes", desc.Size)
	}
	mb, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return "", "", fmt.Errorf("%w: referrer %s: %v", ErrRegistry, desc.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return "", "", fmt.Errorf("manifest: %v", err)
	}
	var problems []string
	for _, l := range m.Layers {
		if l.Size > maxBlob {
			problems = append(problems, "layer larger than 4 MiB")
			continue
		}
		b, err := content.FetchAll(ctx, repo, l)
		if err != nil {
			return "", "", fmt.Errorf("%w: referrer %s layer %s: %v", ErrRegistry, desc.Digest, l.Digest, err)
		}
		s, pt, err := v.checkEnvelope(b, digest)
		if err == nil {
			return s, pt, nil
		}
		problems = append(problems, err.Error())
	}
	if len(problems) == 0 {
		problems = append(problems, "no layer")
	}
	return "", "", errors.New(strings.Join(problems, "; "))
}

// checkEnvelope verifies a sigstore bundle or a DSSE envelope.
func (v *Verifier) checkEnvelope(b []byte, digest string) (signer, predicateType string, err error) {
	var bundle struct {
		MediaType    string          `json:"mediaType"`
		DSSEEnvelope json.RawMessage `json:"dsseEnvelope"`
	}
	envJSON := b
	if json.Unmarshal(b, &bundle) == nil && len(bundle.DSSEEnvelope) > 0 {
		envJSON = bundle.DSSEEnvelope
	}
	var env dsse.Envelope
	if err := json.Unmarshal(envJSON, &env); err != nil {
		return "", "", fmt.Errorf("not a DSSE envelope or sigstore bundle: %v", err)
	}
	if env.PayloadType != dsse.InTotoPayloadType {
		return "", "", fmt.Errorf("payload type %q is not an in-toto statement", env.PayloadType)
	}
	signer = ""
	for _, k := range v.keys {
		if _, err := dsse.Verify(&env, k.pub); err == nil {
			signer = k.name
			break
		}
	}
	if signer == "" {
		return "", "", errors.New("no signature by a trusted scanner release key")
	}
	var st struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.NewDecoder(bytes.NewReader(env.Payload)).Decode(&st); err != nil {
		return "", "", fmt.Errorf("statement: %v", err)
	}
	want := strings.TrimPrefix(digest, "sha256:")
	for _, s := range st.Subject {
		if s.Digest["sha256"] == want {
			return signer, st.PredicateType, nil
		}
	}
	return "", "", fmt.Errorf("signed by %s, but the statement is not about %s", signer, digest)
}
