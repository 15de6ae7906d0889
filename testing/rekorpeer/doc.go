// Package rekorpeer holds the tests that check our log against sigstore's
// rekor v1.5.4 itself: every entry kind submitted side by side to our
// logserver and to rekor-server v1.5.4 (testing/rekorstack), and Rekor's own
// e2e test packages run against our server. It has no non-test code.
package rekorpeer
