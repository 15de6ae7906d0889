// Package kinds registers every entry kind and version that rekor-server
// v1.5.4 compiles in, through Rekor's own pkg/types packages, so that the log
// parses, validates, canonicalises and indexes each of them exactly as Rekor
// does (canonical bodies, leaf hashes, UUIDs and search-index keys are
// Rekor's for the same input). Importing this package is what makes a kind
// acceptable: rekorv1 dispatches on types.TypeMap, which these imports fill.
//
// Kinds and versions (Rekor v1.5.4's cmd/rekor-server entryTypeMap), with the
// public-key formats each takes:
//
//	hashedrekord 0.0.1  x509 key or certificate (PEM)
//	rekord       0.0.1  pgp, minisign, ssh, x509 key or certificate
//	dsse         0.0.1  x509 keys or certificates
//	intoto       0.0.1  x509 key or certificate
//	intoto       0.0.2  x509 keys or certificates
//	cose         0.0.1  x509 key or certificate
//	jar          0.0.1  pkcs7 (the JAR's signature block, its certificates)
//	rpm          0.0.1  pgp
//	helm         0.0.1  pgp (provenance file)
//	alpine       0.0.1  x509 (RSA key of the APK signature)
//	rfc3161      0.0.1  the timestamp token's own certificates
//	tuf          0.0.1  tuf (root metadata)
//
// Nothing is fetched from the network. Rekor v1.5.4's types take every
// artifact, signature and key inline (server-side URL fetching was removed
// from Rekor in sigstore/rekor#735, and search by key URL in #2731): a "url"
// member in a spec is not part of any v1.5.4 schema, is ignored by Rekor's
// decoder exactly as Rekor ignores it, and the entry is then refused for its
// missing content. A sovereign appliance must never fetch on behalf of a
// client (SSRF into the site's network), so this is kept, and tested.
//
// The cost of parsing archives (jar, rpm, alpine, helm) is bounded by the
// request-size cap of the HTTP layer.
package kinds

import (
	// Registers each kind's versions in types.TypeMap (their init functions).
	_ "github.com/sigstore/rekor/pkg/types/alpine/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/cose/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/helm/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.2"
	_ "github.com/sigstore/rekor/pkg/types/jar/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/rekord/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/rfc3161/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/rpm/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/tuf/v0.0.1"
)
