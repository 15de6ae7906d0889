package main

import (
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/stellaops/tlog/witness/config"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/logkey"
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
	if !logkey.ValidName(*name) {
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

func loadSigner(cfg *config.Config) (*cosig.Signer, error) {
	key, err := cosig.LoadKeyFile(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	return cosig.NewSigner(cfg.Name, key)
}

func vkeyCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vkey", flag.ContinueOnError)
	cfgPath := fs.String("c", "witness.yaml", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	s, err := loadSigner(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, s.VerifierKey())
	return nil
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
	vkey, err := logkey.VerifierKeyFromPublicKey(*name, pub)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}
