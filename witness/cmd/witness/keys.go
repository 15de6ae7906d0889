package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/keys"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/witness/config"
	"github.com/stellaops/tlog/witness/cosig"
)

func keygenCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	name := fs.String("name", "", "witness name (key name), e.g. witness.example.com/w1")
	out := fs.String("out", "", "path of the new key file (must not exist)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return fmt.Errorf("%w: keygen needs -name and -out", errUsage)
	}
	if !notekey.ValidName(*name) {
		return fmt.Errorf("%w: invalid name %q", errUsage, *name)
	}
	key, err := cosig.GenerateKeyFile(*out)
	if err != nil {
		return err
	}
	s, err := cosig.NewSigner(*name, key)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, s.VerifierKey())
	return nil
}

// loadSigner opens the witness key named by the configuration: a key file,
// a PKCS#11 token key (checked to be Ed25519), or a key of the signer
// service (waiting for a starting signer). The returned close function releases the token; call it once the
// signer is no longer used.
func loadSigner(ctx context.Context, cfg *config.Config, logger *slog.Logger) (cosig.Cosigner, func() error, error) {
	if sk := cfg.Signer; sk != nil {
		c, err := client.Open(ctx, sk.Config, logger)
		if err != nil {
			return nil, nil, fmt.Errorf("signer: %w", err)
		}
		r, err := cosig.NewRemote(ctx, c, sk.Key, cfg.Name, sk.Timeout, sk.MaxInFlight)
		if err != nil {
			return nil, nil, err
		}
		return r, func() error { return nil }, nil
	}
	if cfg.PKCS11 == nil {
		key, err := cosig.LoadKeyFile(cfg.KeyFile)
		if err != nil {
			return nil, nil, err
		}
		s, err := cosig.NewSigner(cfg.Name, key)
		return s, func() error { return nil }, err
	}
	p := cfg.PKCS11
	key, closeKey, err := keys.Open(ctx, keys.Config{PKCS11: &keys.PKCS11Config{
		Config: pkcs11.Config{
			Module: p.Module, TokenLabel: p.TokenLabel,
			PINFile: p.PINFile, PINEnv: p.PINEnv, Sessions: p.Sessions,
		},
		Label: p.KeyLabel,
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("opening PKCS#11 key %q in token %q: %w", p.KeyLabel, p.TokenLabel, err)
	}
	if alg := key.Algorithm(); alg != keys.Ed25519 {
		return nil, nil, errors.Join(fmt.Errorf("%w: PKCS#11 key %q in token %q is %s, the witness needs an Ed25519 key",
			cosig.ErrBadKey, p.KeyLabel, p.TokenLabel, alg), closeKey())
	}
	s, err := cosig.NewSigner(cfg.Name, key)
	if err != nil {
		return nil, nil, errors.Join(err, closeKey())
	}
	return s, closeKey, nil
}

func vkeyCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vkey", flag.ContinueOnError)
	cfgPath := service.ConfigFlag(fs, "witness.yaml")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	// A key of the signer: wait for a starting signer, but not for ever.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, closeKey, err := loadSigner(ctx, cfg, slog.Default())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, s.VerifierKey())
	return closeKey()
}

func logVKeyCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("log-vkey", flag.ContinueOnError)
	name := fs.String("name", "", "key name in the log's signature lines (Rekor: the bare hostname)")
	pubPath := fs.String("pubkey", "", "PEM public key (SPKI) of the log, Ed25519 or ECDSA")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" || *pubPath == "" {
		return fmt.Errorf("%w: log-vkey needs -name and -pubkey", errUsage)
	}
	raw, err := os.ReadFile(*pubPath)
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return fmt.Errorf("%s: no PEM PUBLIC KEY block", *pubPath)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", *pubPath, err)
	}
	vkey, err := notekey.VerifierKeyFromPublicKey(*name, pub)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}
