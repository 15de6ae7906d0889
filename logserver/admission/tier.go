package admission

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/stellaops/tlog/logserver/budget"
)

// TierHeader names a submission's tier explicitly: "graph" or "edge".
const TierHeader = "X-Stella-Tier"

// Classifier decides a submission's tier. Rules, the first that applies:
//  1. the TierHeader ("graph" or "edge"; any other value is an error);
//  2. the entry kind is in EdgeKinds (Rekor v1: the body's "kind"; v2:
//     "dsse" or "hashedrekord");
//  3. the in-toto predicate type of the DSSE envelope (v1 dsse and
//     intoto, v2 dsse) is in EdgePredicateTypes;
//  4. the body is at least EdgeMinBytes long (when EdgeMinBytes > 0);
//  5. else graph.
//
// A body that cannot be parsed falls to rules 4 and 5 (the API then
// refuses it, and its charge is refunded).
type Classifier struct {
	EdgeKinds          []string
	EdgePredicateTypes []string
	EdgeMinBytes       int64
}

// Tier classifies a submission to api ("v1" or "v2") with header value
// header and body.
func (c Classifier) Tier(api, header string, body []byte) (string, error) {
	switch h := strings.TrimSpace(header); {
	case h == budget.TierGraph || h == budget.TierEdge:
		return h, nil
	case header != "":
		return "", fmt.Errorf("%s %q: want %q or %q", TierHeader, header, budget.TierGraph, budget.TierEdge)
	}
	if len(c.EdgeKinds) > 0 || len(c.EdgePredicateTypes) > 0 {
		kind, env := parseEntry(api, body)
		if kind != "" && slices.Contains(c.EdgeKinds, kind) {
			return budget.TierEdge, nil
		}
		if len(c.EdgePredicateTypes) > 0 && env != nil {
			if pt := predicateType(env); pt != "" && slices.Contains(c.EdgePredicateTypes, pt) {
				return budget.TierEdge, nil
			}
		}
	}
	if c.EdgeMinBytes > 0 && int64(len(body)) >= c.EdgeMinBytes {
		return budget.TierEdge, nil
	}
	return budget.TierGraph, nil
}

// envelope is the part of a DSSE envelope the classifier reads.
type envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
}

// parseEntry returns the entry kind of body and its DSSE envelope, if any.
func parseEntry(api string, body []byte) (string, *envelope) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return "", nil
	}
	if api == "v2" {
		for key, kind := range map[string]string{"dsseRequestV002": "dsse", "dsse_request_v002": "dsse",
			"hashedRekordRequestV002": "hashedrekord", "hashed_rekord_request_v002": "hashedrekord"} {
			req, ok := top[key]
			if !ok {
				continue
			}
			var r struct {
				Envelope *envelope `json:"envelope"`
			}
			_ = json.Unmarshal(req, &r)
			return kind, r.Envelope
		}
		return "", nil
	}
	var kind string
	_ = json.Unmarshal(top["kind"], &kind)
	var spec struct {
		ProposedContent struct {
			Envelope string `json:"envelope"` // dsse 0.0.1: the envelope as a JSON string
		} `json:"proposedContent"`
		Content struct {
			Envelope json.RawMessage `json:"envelope"` // intoto: a string (0.0.1) or an object (0.0.2)
		} `json:"content"`
	}
	_ = json.Unmarshal(top["spec"], &spec)
	raw := []byte(spec.ProposedContent.Envelope)
	if len(raw) == 0 {
		raw = spec.Content.Envelope
		var s string
		if json.Unmarshal(raw, &s) == nil {
			raw = []byte(s)
		}
	}
	var env envelope
	if len(raw) == 0 || json.Unmarshal(raw, &env) != nil {
		return kind, nil
	}
	return kind, &env
}

// predicateType reads the in-toto statement's predicate type from env's
// payload (base64; intoto 0.0.2 clients encode it twice).
func predicateType(env *envelope) string {
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return ""
	}
	if !bytes.HasPrefix(bytes.TrimSpace(payload), []byte("{")) {
		if payload, err = base64.StdEncoding.DecodeString(string(payload)); err != nil {
			return ""
		}
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if json.Unmarshal(payload, &st) != nil {
		return ""
	}
	return st.PredicateType
}
