package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stellaops/tlog/signer/keys"
	"github.com/stellaops/tlog/signer/note"
	"github.com/stellaops/tlog/signer/pkcs11"
)

// Environment variables the keys commands read when flags are not given.
const (
	envModule = "SIGNER_PKCS11_MODULE" // path of the PKCS#11 library
	envToken  = "SIGNER_PKCS11_TOKEN"  // token label
	envPIN    = "SIGNER_PKCS11_PIN"    // user PIN, when -pin-file is not given
	envSOPIN  = "SIGNER_PKCS11_SO_PIN" // SO PIN for init-token, when -so-pin-file is not given
)

// errUsage marks errors that are the caller's command line.
var errUsage = errors.New("usage")

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"init-token": cmdInitToken,
		"generate":   cmdGenerate,
		"list":       cmdList,
		"public":     cmdPublic,
		"bench":      cmdBench,
	}
	if len(args) == 0 || cmds[args[0]] == nil {
		fmt.Fprintln(stderr, "usage: signer keys <init-token|generate|list|public|bench> [flags]")
		return 2
	}
	err := cmds[args[0]](ctx, args[1:], stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stderr, "signer keys %s: %v\n", args[0], err)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// tokenFlags are the flags that select and unlock a token.
type tokenFlags struct {
	module, token, pinFile, pinEnv string
	sessions                       int
}

func (f *tokenFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.module, "module", envOr(envModule, pkcs11.DefaultModule), "PKCS#11 library (env "+envModule+")")
	fs.StringVar(&f.token, "token", os.Getenv(envToken), "token label (env "+envToken+")")
	fs.StringVar(&f.pinFile, "pin-file", "", "file holding the user PIN")
	fs.StringVar(&f.pinEnv, "pin-env", envPIN, "environment variable holding the user PIN, used when -pin-file is not given")
}

func (f *tokenFlags) config() (pkcs11.Config, error) {
	if f.token == "" {
		return pkcs11.Config{}, usagef("-token (or %s) is required", envToken)
	}
	c := pkcs11.Config{Module: f.module, TokenLabel: f.token, PINFile: f.pinFile, Sessions: max(f.sessions, 1)}
	if f.pinFile == "" {
		c.PINEnv = f.pinEnv
	}
	return c, nil
}

func (f *tokenFlags) open(ctx context.Context) (*pkcs11.Token, error) {
	c, err := f.config()
	if err != nil {
		return nil, err
	}
	return pkcs11.Open(ctx, c)
}

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	return nil
}

func cmdInitToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init-token", flag.ContinueOnError)
	conf := fs.String("softhsm-conf", os.Getenv("SOFTHSM2_CONF"), "SoftHSM2 configuration file (env SOFTHSM2_CONF)")
	tokenDir := fs.String("token-dir", "", "if set, write -softhsm-conf (which must not exist) with this token directory")
	module := fs.String("module", envOr(envModule, pkcs11.DefaultModule), "PKCS#11 library (env "+envModule+")")
	label := fs.String("label", "", "label of the new token")
	soPINFile := fs.String("so-pin-file", "", "file holding the security officer PIN (else env "+envSOPIN+")")
	pinFile := fs.String("pin-file", "", "file holding the user PIN (else env "+envPIN+")")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: signer keys init-token -softhsm-conf FILE [-token-dir DIR] -label L [-so-pin-file F] [-pin-file F]\n\nInitialises a SoftHSM2 development token in the first free slot.")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *conf == "" || *label == "" {
		return usagef("-softhsm-conf and -label are required")
	}
	if *tokenDir != "" {
		if err := writeSoftHSMConf(*conf, *tokenDir); err != nil {
			return err
		}
	}
	soPIN, err := pinFrom(*soPINFile, envSOPIN)
	if err != nil {
		return fmt.Errorf("SO PIN: %w", err)
	}
	pin, err := pinFrom(*pinFile, envPIN)
	if err != nil {
		return fmt.Errorf("user PIN: %w", err)
	}
	// SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, below.
	if err := os.Setenv("SOFTHSM2_CONF", *conf); err != nil {
		return err
	}
	if err := pkcs11.InitToken(*module, *label, soPIN, pin); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "initialised token %q\nexport SOFTHSM2_CONF=%s\n", *label, *conf)
	return nil
}

func pinFrom(file, env string) (string, error) {
	if file != "" {
		return pkcs11.ReadPIN(file, "")
	}
	return pkcs11.ReadPIN("", env)
}

// writeSoftHSMConf creates a SoftHSM2 configuration using tokenDir, and the
// directory itself. It refuses to overwrite an existing configuration.
func writeSoftHSMConf(conf, tokenDir string) error {
	abs, err := filepath.Abs(tokenDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(conf), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(conf, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing SoftHSM2 configuration: %w", err)
	}
	_, err = fmt.Fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", abs)
	return errors.Join(err, f.Close())
}

func cmdGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	var tf tokenFlags
	tf.register(fs)
	label := fs.String("label", "", "label of the new key pair (CKA_LABEL)")
	typ := fs.String("type", "", "key type: ecdsa-p256 or ed25519")
	out := fs.String("out", "", "instead of a token key, write a development PEM private key to this new file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: signer keys generate -token T -label L -type ecdsa-p256|ed25519 [-pin-file F]\n       signer keys generate -type ecdsa-p256|ed25519 -out key.pem\n\nGenerates a non-extractable key pair inside the token and prints its public key.")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	kt, err := pkcs11.ParseKeyType(*typ)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *out != "" {
		b, err := keys.GeneratePEM(keys.Algorithm(kt))
		if err != nil {
			return err
		}
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(b)
		if err := errors.Join(err, f.Close()); err != nil {
			return err
		}
		k, err := keys.LoadFile(*out)
		if err != nil {
			return err
		}
		return printPEM(stdout, k.Public())
	}
	if *label == "" {
		return usagef("-label is required")
	}
	tok, err := tf.open(ctx)
	if err != nil {
		return err
	}
	defer tok.Close()
	s, err := tok.Generate(ctx, *label, kt)
	if err != nil {
		return err
	}
	id, err := keys.ID(s.Public())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "generated %s key %q in token %q, key id %s\n", kt, *label, tok.Label(), hex.EncodeToString(id[:]))
	return printPEM(stdout, s.Public())
}

func cmdList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	var tf tokenFlags
	tf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: signer keys list -token T [-pin-file F]\n\nLists key pairs; KEY ID is the first 8 bytes of SHA-256 of the public key's DER SubjectPublicKeyInfo.")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	tok, err := tf.open(ctx)
	if err != nil {
		return err
	}
	defer tok.Close()
	ks, err := tok.Keys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tTYPE\tKEY ID\tCKA_ID\tSENSITIVE\tEXTRACTABLE")
	for _, k := range ks {
		id, err := keys.ID(k.Public)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%x\t%s\t%t\t%t\n", k.Label, k.Type, id[:8], k.ID, k.Sensitive, k.Extractable)
	}
	return tw.Flush()
}

func cmdPublic(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("public", flag.ContinueOnError)
	var tf tokenFlags
	tf.register(fs)
	label := fs.String("label", "", "label of the key pair in the token")
	file := fs.String("file", "", "instead of a token key, a development PEM private key file")
	format := fs.String("format", "pem", "pem | vkey (signed-note verifier key) | cosigner-vkey (cosignature/v1, Ed25519 only)")
	name := fs.String("name", "", "key name for -format vkey or cosigner-vkey: the log origin, or the witness name")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: signer keys public (-token T -label L | -file key.pem) [-format pem|vkey|cosigner-vkey -name NAME]")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *format != "pem" && *name == "" {
		return usagef("-name is required for -format %s", *format)
	}
	var pub crypto.PublicKey
	switch {
	case *file != "" && *label != "":
		return usagef("give -label or -file, not both")
	case *file != "":
		k, err := keys.LoadFile(*file)
		if err != nil {
			return err
		}
		pub = k.Public()
	case *label != "":
		tok, err := tf.open(ctx)
		if err != nil {
			return err
		}
		defer tok.Close()
		s, err := tok.Signer(ctx, *label)
		if err != nil {
			return err
		}
		pub = s.Public()
	default:
		return usagef("-label or -file is required")
	}
	switch *format {
	case "pem":
		return printPEM(stdout, pub)
	case "vkey":
		v, err := note.VerifierKey(*name, pub)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, v)
		return err
	case "cosigner-vkey":
		v, err := note.CosignerVerifierKey(*name, pub)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, v)
		return err
	}
	return usagef("unknown -format %q", *format)
}

func printPEM(w io.Writer, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var tf tokenFlags
	tf.register(fs)
	labels := fs.String("label", "", "comma-separated labels of the key pairs to measure")
	gs := fs.String("goroutines", "1,2,4", "comma-separated numbers of concurrent signing goroutines")
	fs.IntVar(&tf.sessions, "sessions", 0, "session pool size (0: the largest -goroutines value)")
	dur := fs.Duration("duration", 5*time.Second, "how long to sign in each case")
	n := fs.Int("n", 0, "if > 0, sign exactly this many times per goroutine instead of for -duration")
	msgSize := fs.Int("message-size", 256, "bytes signed by Ed25519 keys (ECDSA keys sign a SHA-256 digest)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: signer keys bench -token T -label L[,L2] [-goroutines 1,2,4] [-duration 5s | -n N]\n\nSigns through the session pool and prints signatures/s and latency percentiles.")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *labels == "" {
		return usagef("-label is required")
	}
	var counts []int
	for f := range strings.SplitSeq(*gs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c <= 0 {
			return usagef("bad -goroutines %q", *gs)
		}
		counts = append(counts, c)
	}
	if tf.sessions == 0 {
		tf.sessions = slices.Max(counts)
	}
	tok, err := tf.open(ctx)
	if err != nil {
		return err
	}
	defer tok.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "key\ttype\tgoroutines\tsessions\tsignatures\tsig/s\tp50\tp99\tmax\t\n")
	for l := range strings.SplitSeq(*labels, ",") {
		s, err := tok.Signer(ctx, l)
		if err != nil {
			return err
		}
		for _, g := range counts {
			r, err := bench(ctx, s, g, *dur, *n, *msgSize)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.0f\t%v\t%v\t%v\t\n", l, s.KeyType(), g, tf.sessions, r.count, r.rate, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond))
		}
	}
	return tw.Flush()
}
