package pkcs11

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// InitToken initialises a token labelled label in the first slot of module
// that holds no initialised token, with security officer PIN soPIN and user
// PIN userPIN. It is meant for development tokens (SoftHSM2 always offers
// one free slot); production tokens are initialised by their own tools.
// It fails with [ErrKeyExists] if a token with that label already exists.
func InitToken(module, label, soPIN, userPIN string) (err error) {
	if module == "" {
		module = DefaultModule
	}
	if label == "" || soPIN == "" || userPIN == "" {
		return fmt.Errorf("pkcs11: token label, SO PIN and user PIN are all required")
	}
	m, err := loadModule(module)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, m.release()) }()
	c := m.ctx
	if _, err := findSlot(c, label); err == nil {
		return fmt.Errorf("%w: token %q", ErrKeyExists, label)
	} else if !errors.Is(err, ErrTokenNotFound) {
		return err
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		return wrap("C_GetSlotList", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			return wrap("C_GetTokenInfo", err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			free, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("pkcs11: no free slot to initialise a token in")
	}
	if err := c.InitToken(free, soPIN, label); err != nil {
		return wrap("C_InitToken", err)
	}
	// SoftHSM2 moves a token to a new slot id when it is initialised.
	slot, err := findSlot(c, label)
	if err != nil {
		return err
	}
	h, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return wrap("C_OpenSession", err)
	}
	defer func() { err = errors.Join(err, wrap("C_CloseSession", c.CloseSession(h))) }()
	if err := c.Login(h, pkcs11.CKU_SO, soPIN); err != nil {
		return wrap("C_Login", err)
	}
	if err := c.InitPIN(h, userPIN); err != nil {
		_ = c.Logout(h)
		return wrap("C_InitPIN", err)
	}
	return wrap("C_Logout", c.Logout(h))
}
