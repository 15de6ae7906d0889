package pkcs11

import (
	"errors"
	"fmt"
	"os"

	"github.com/stellaops/tlog/internal/service"
)

// ReadPIN returns the PIN stored in file, or else in the environment
// variable env. Exactly one of them must be set. A file is read with
// service.ReadSecret, as every secret file: surrounding whitespace is
// removed. The PIN itself never appears in an error.
func ReadPIN(file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", fmt.Errorf("pkcs11: set a PIN file or a PIN environment variable, not both")
	case file != "":
		pin, err := service.ReadSecret(file)
		if errors.Is(err, service.ErrEmptySecret) {
			return "", fmt.Errorf("%w: PIN file %s is empty", ErrNoPIN, file)
		}
		if err != nil {
			return "", fmt.Errorf("pkcs11: reading PIN file: %w", err)
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
