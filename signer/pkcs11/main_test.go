package pkcs11

import (
	"fmt"
	"os"
	"testing"

	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
)

const (
	testToken      = "signer-test"
	wrongPINToken  = "signer-wrongpin"
	removableToken = "signer-removable"
	testPIN        = softhsmtest.PIN
	testPINEnvName = "SIGNER_TEST_PKCS11_PIN"
)

var testModule, testTokenDir string

// TestMain creates every token the tests use before the module is first
// initialised, in a SoftHSM2 token directory private to this run.
func TestMain(m *testing.M) {
	env, cleanup, err := softhsmtest.Setup(testToken, wrongPINToken, removableToken)
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up SoftHSM2:", err)
		os.Exit(1)
	}
	testModule, testTokenDir = env.Module, env.TokenDir
	os.Setenv(testPINEnvName, testPIN)
	code := m.Run()
	cleanup()
	os.Exit(code)
}
