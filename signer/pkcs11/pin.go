package pkcs11

import (
	"fmt"
	"os"
	"strings"
)

// ReadPIN returns the PIN stored in file, or else in the environment
// variable env. Exactly one of them must be set. One trailing newline is
// removed from a file. The PIN itself never appears in an error.
func ReadPIN(file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", fmt.Errorf("pkcs11: set a PIN file or a PIN environment variable, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("pkcs11: reading PIN file: %w", err)
		}
		pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pin == "" {
			return "", fmt.Errorf("%w: PIN file %s is empty", ErrNoPIN, file)
		}
		return pin, nil
	case env != "":
		pin := os.Getenv(env)
		if pin == "" {
			return "", fmt.Errorf("%w: environment variable %s is empty or unset", ErrNoPIN, env)
		}
		return pin, nil
	}
	return "", ErrNoPIN
}
