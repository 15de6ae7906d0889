package store

import (
	"bytes"
	"errors"
	"testing"
)

func TestEncodeBundle(t *testing.T) {
	got, err := encodeBundle([][]byte{[]byte("ab"), {}, bytes.Repeat([]byte{7}, 300)})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0, 2, 'a', 'b', 0, 0, 1, 44}, bytes.Repeat([]byte{7}, 300)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x", got)
	}
	if _, err := encodeBundle([][]byte{make([]byte, MaxBundleEntry)}); err != nil {
		t.Fatalf("largest entry: %v", err)
	}
	if _, err := encodeBundle([][]byte{make([]byte, MaxBundleEntry+1)}); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("oversize entry: %v", err)
	}
}
