package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// fuzzNow is the server's clock in the fuzz targets and the time every
// request is signed at: fixed, so that a corpus entry verifies (or not)
// the same way forever.
var fuzzNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const fuzzHost = "skiff.test:7443"

// What FuzzVerify changes in a correctly signed request after signing it.
const (
	tamperNone   = iota // nothing: the request must verify
	tamperBody          // the body
	tamperAuth          // the Authorization header (X-Amz-Signature if presigned)
	tamperDate          // X-Amz-Date
	tamperTarget        // path and query
	tamperHeader        // a signed header (Content-Type; x-k8s-aws-id if presigned)
	tamperToken         // X-Amz-Security-Token
	tamperMethod        // the method
	tamperHost          // the Host header
	tamperKinds
)

var fuzzMethods = []string{"POST", "GET", "PUT", "DELETE"}

// fuzzCase is one decoded FuzzVerify input.
type fuzzCase struct {
	session, presigned bool
	kind               int
	method             string
	target             string // path and query after the host, without the leading "/"
	body               []byte
	tamper             string
}

// decode spreads the bits of how: session key, presigned, tamper kind, method.
func decodeCase(how uint8, target string, body []byte, tamper string) fuzzCase {
	c := fuzzCase{session: how&1 != 0, presigned: how&2 != 0, kind: int(how>>2&15) % tamperKinds,
		method: fuzzMethods[how>>6], target: target, body: body, tamper: tamper}
	if c.presigned {
		c.method, c.body = "GET", nil // what a presigned URL is for
	}
	return c
}

// sign builds and signs c's request as a client would (aws-sdk-go-v2's
// signer); ok is false if no client could send it.
func (c fuzzCase) sign() (*http.Request, bool) {
	creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
	if c.session {
		creds = aws.Credentials{AccessKeyID: "ASIATEMP", SecretAccessKey: "tmpsecret", SessionToken: "tok"}
	}
	req, err := http.NewRequest(c.method, "http://"+fuzzHost+"/"+c.target, nil)
	if err != nil {
		return nil, false
	}
	setBody(req, c.body)
	if !c.presigned {
		req.Header.Set("Content-Type", "application/json")
		sum := sha256.Sum256(c.body)
		if v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "eks", "us-east-1", fuzzNow) != nil {
			return nil, false
		}
		return req, true
	}
	if req.URL.RawQuery != "" {
		req.URL.RawQuery += "&"
	}
	req.URL.RawQuery += "X-Amz-Expires=900"
	req.Header.Set("x-k8s-aws-id", "prod")
	empty := sha256.Sum256(nil)
	u, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, hex.EncodeToString(empty[:]), "sts", "us-east-1", fuzzNow)
	if err != nil {
		return nil, false
	}
	if req, err = http.NewRequest("GET", u, nil); err != nil {
		return nil, false
	}
	for k, v := range hdr {
		if !strings.EqualFold(k, "host") {
			req.Header[k] = v
		}
	}
	return req, true
}

func setBody(req *http.Request, body []byte) {
	req.Body, req.ContentLength = http.NoBody, 0
	if len(body) > 0 {
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
}

// wire sends req through HTTP/1.1 and parses it as skiff's server does:
// Verify sees what a server sees. ok is false if the bytes are not a
// request a server would accept.
func wire(req *http.Request, body []byte) (*http.Request, []byte, bool) {
	setBody(req, body)
	var buf bytes.Buffer
	if req.Write(&buf) != nil {
		return nil, nil, false
	}
	sr, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		return nil, nil, false
	}
	data, err := io.ReadAll(sr.Body)
	if err != nil {
		return nil, nil, false
	}
	return sr, data, true
}

// apply changes req (signed) as kind says; it returns the body to send.
func (c fuzzCase) apply(req *http.Request) ([]byte, bool) {
	body := c.body
	setQuery := func(k, v string) {
		q := req.URL.Query()
		q.Set(k, v)
		req.URL.RawQuery = q.Encode()
	}
	switch c.kind {
	case tamperBody:
		body = []byte(c.tamper)
	case tamperAuth:
		if c.presigned {
			setQuery("X-Amz-Signature", c.tamper)
		} else {
			req.Header.Set("Authorization", c.tamper)
		}
	case tamperDate:
		if c.presigned {
			setQuery("X-Amz-Date", c.tamper)
		} else {
			req.Header.Set("X-Amz-Date", c.tamper)
		}
	case tamperTarget:
		u, err := url.Parse("http://" + fuzzHost + "/" + c.tamper)
		if err != nil {
			return nil, false
		}
		if c.presigned {
			// The signature stays the signed request's: a tamper that
			// brings a whole genuine URL of another request is no forgery.
			q := u.Query()
			q.Set("X-Amz-Signature", req.URL.Query().Get("X-Amz-Signature"))
			u.RawQuery = q.Encode()
		}
		req.URL = u
	case tamperHeader:
		if c.presigned {
			req.Header.Set("x-k8s-aws-id", c.tamper)
		} else {
			req.Header.Set("Content-Type", c.tamper)
		}
	case tamperToken:
		if c.presigned {
			setQuery("X-Amz-Security-Token", c.tamper)
		} else {
			req.Header.Set("X-Amz-Security-Token", c.tamper)
		}
	case tamperMethod:
		req.Method = c.tamper
	case tamperHost:
		req.Host = c.tamper
	}
	return body, true
}

// equivalent says whether the tampered request (as the server parsed it)
// still means what the signed one (orig) meant, for the part c changed: only
// then may Verify accept it.
func (c fuzzCase) equivalent(orig, got *http.Request, origBody, gotBody []byte) bool {
	fields := func(r *http.Request, name string) string {
		return strings.Join(strings.Fields(strings.Join(r.Header.Values(name), ",")), " ")
	}
	switch c.kind {
	case tamperBody:
		return bytes.Equal(origBody, gotBody)
	case tamperAuth:
		if c.presigned {
			return got.URL.Query().Get("X-Amz-Signature") == orig.URL.Query().Get("X-Amz-Signature")
		}
		// The signature must be one an honest client computed for this
		// request: with the key it was signed with, or with the other one.
		sig := authField(got.Header.Get("Authorization"), "Signature")
		other := c
		other.session = !c.session
		alt, ok := other.sign()
		return sig == authField(orig.Header.Get("Authorization"), "Signature") ||
			ok && sig == authField(alt.Header.Get("Authorization"), "Signature")
	case tamperDate:
		date := func(r *http.Request) string {
			if c.presigned {
				return r.URL.Query().Get("X-Amz-Date")
			}
			return r.Header.Get("X-Amz-Date")
		}
		t1, err1 := time.Parse("20060102T150405Z", date(got))
		t2, err2 := time.Parse("20060102T150405Z", date(orig))
		return err1 == nil && err2 == nil && t1.Equal(t2)
	case tamperTarget:
		q1, q2 := got.URL.Query(), orig.URL.Query()
		if c.presigned && !c.session {
			q1.Del("X-Amz-Security-Token") // ignored next to a long-term key (see tamperToken)
		}
		return got.URL.EscapedPath() == orig.URL.EscapedPath() && reflect.DeepEqual(q1, q2)
	case tamperHeader:
		name := "Content-Type"
		if c.presigned {
			name = "x-k8s-aws-id"
		}
		return fields(got, name) == fields(orig, name)
	case tamperToken:
		// An unsigned token next to a long-term key is ignored; a session's
		// token must be the session's.
		if c.presigned {
			return !c.session || got.URL.Query().Get("X-Amz-Security-Token") == "tok"
		}
		return !c.session || got.Header.Get("X-Amz-Security-Token") == "tok"
	case tamperMethod:
		return got.Method == orig.Method
	case tamperHost:
		return strings.EqualFold(got.Host, orig.Host)
	}
	return true
}

var verifyErrors = []error{ErrUnsigned, ErrMalformed, ErrUnknownKey, ErrSignature, ErrExpired}

// FuzzVerify signs a request built from the input with a known key, changes
// one part of it (or nothing), sends it through HTTP/1.1 and verifies it.
// Properties: Verify never panics; every error is one of the package's
// kinds; an untouched, correctly signed request verifies (with the right
// key, service, region and time, and Scope agreeing); a changed request
// verifies only if the change kept its meaning (no forgery without the
// secret).
func FuzzVerify(f *testing.F) {
	for _, how := range []uint8{0, 1, 2, 3, 0x40, 0x80, 0xc1} {
		f.Add(how, "clusters?x=1", []byte(`{"name":"x"}`), "")
	}
	f.Add(uint8(2), "?Action=GetCallerIdentity&Version=2011-06-15", []byte(nil), "")
	f.Add(uint8(0), "clusters/a%2Fb/node-groups?maxResults=1&nextToken=a+b", []byte("{}"), "")
	f.Add(uint8(0x40), "tags/arn:aws:eks:us-east-1:111111111111:cluster%2Fweb", []byte(nil), "")
	// Each kind of tampering, from the seed request or its genuine values,
	// so that the fuzzer mutates real signatures and dates.
	base := fuzzCase{method: "POST", target: "clusters?x=1", body: []byte(`{"name":"x"}`)}
	orig, _ := base.sign()
	pre := fuzzCase{presigned: true, method: "GET", target: "?Action=GetCallerIdentity&Version=2011-06-15"}
	porig, _ := pre.sign()
	for kind, tamper := range map[int]string{
		tamperBody:   `{"name":"y"}`,
		tamperAuth:   orig.Header.Get("Authorization"),
		tamperDate:   orig.Header.Get("X-Amz-Date"),
		tamperTarget: "clusters?x=2",
		tamperHeader: "application/json ",
		tamperToken:  "tok",
		tamperMethod: "PUT",
		tamperHost:   "SKIFF.test:7443",
	} {
		f.Add(uint8(kind<<2), base.target, base.body, tamper)
		f.Add(uint8(kind<<2|1), base.target, base.body, tamper)
	}
	f.Add(uint8(tamperAuth<<2|2), pre.target, []byte(nil), porig.URL.Query().Get("X-Amz-Signature"))
	f.Add(uint8(tamperTarget<<2|2), pre.target, []byte(nil), strings.TrimPrefix(porig.URL.RequestURI(), "/"))
	f.Add(uint8(tamperDate<<2|2), pre.target, []byte(nil), "20260102T030406Z")
	f.Add(uint8(tamperHeader<<2|2), pre.target, []byte(nil), "prod2")

	f.Fuzz(func(t *testing.T, how uint8, target string, body []byte, tamper string) {
		c := decodeCase(how, target, body, tamper)
		req, ok := c.sign()
		if !ok {
			return
		}
		orig, origBody, ok := wire(req, c.body)
		if !ok {
			return
		}
		sent, ok := c.apply(req)
		if !ok {
			return
		}
		got, gotBody, ok := wire(req, sent)
		if !ok {
			return
		}
		signed, err := Verify(context.Background(), got, gotBody, lookup, fuzzNow, 0)
		if err != nil {
			known := false
			for _, kind := range verifyErrors {
				known = known || errors.Is(err, kind)
			}
			if !known {
				t.Fatalf("Verify error %q is none of the package's error kinds", err)
			}
			// An ambiguous request (its own X-Amz-* parameters) may be refused.
			if c.kind == tamperNone && !strings.Contains(strings.ToLower(c.target), "x-amz-") {
				t.Fatalf("a correctly signed %s %q (presigned %t) was refused: %v", c.method, got.URL.RequestURI(), c.presigned, err)
			}
			return
		}
		if c.kind != tamperNone && !c.equivalent(orig, got, origBody, gotBody) {
			t.Fatalf("FORGERY: request changed (kind %d, %q) was accepted:\nsigned:   %s %s %v\naccepted: %s %s %v",
				c.kind, c.tamper, orig.Method, orig.URL.RequestURI(), orig.Header, got.Method, got.URL.RequestURI(), got.Header)
		}
		want := "AKIDEXAMPLE"
		if c.session {
			want = "ASIATEMP"
		}
		if signed.AccessKeyID != want && c.kind != tamperAuth || signed.Region != "us-east-1" || !signed.Time.Equal(fuzzNow) || signed.Presigned != c.presigned {
			t.Fatalf("accepted as %+v", signed)
		}
		if id, service, ok := Scope(got); !ok || id != signed.AccessKeyID || service != signed.Service {
			t.Fatalf("Scope = %q %q %t, Verify = %+v", id, service, ok, signed)
		}
	})
}

// FuzzScope parses random Authorization headers and queries. Properties:
// no panic; ok exactly when the claimed credential has five parts, whose
// first and fourth Scope returns; and Verify looks up no other key than the
// one Scope reports (the router styles errors by Scope's service, then
// routes by Verify's).
func FuzzScope(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-1/eks/aws4_request, SignedHeaders=host;x-amz-date, Signature=00", "")
	f.Add("", "X-Amz-Credential=AKIDEXAMPLE%2F20260102%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Signature=00&X-Amz-Algorithm=AWS4-HMAC-SHA256")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e/f", "X-Amz-Credential=x/y/z/w/v")
	f.Add("Credential=,,Credential=a/b/c/d/e", "")
	f.Add("AWS4-HMAC-SHA256", "X-Amz-Credential=%zz")
	f.Fuzz(func(t *testing.T, auth, rawQuery string) {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: rawQuery}, Header: http.Header{}, Host: fuzzHost}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		r.Header.Set("X-Amz-Date", "20260102T030405Z")
		id, service, ok := Scope(r)
		cred := r.URL.Query().Get("X-Amz-Credential")
		if auth != "" {
			cred = authField(auth, "Credential")
		}
		parts := strings.Split(cred, "/")
		if ok != (len(parts) == 5) || ok && (id != parts[0] || service != parts[3]) {
			t.Fatalf("Scope(%q, %q) = %q %q %t", auth, rawQuery, id, service, ok)
		}
		if !ok && (id != "" || service != "") {
			t.Fatalf("Scope not ok but returned %q %q", id, service)
		}
		looked := ""
		_, err := Verify(context.Background(), r, nil, func(ctx context.Context, key string) (Secret, error) {
			looked = key
			return lookup(ctx, key)
		}, fuzzNow, 0)
		if looked != "" && looked != id {
			t.Fatalf("Verify looked up %q, Scope claims %q", looked, id)
		}
		if err == nil && (!ok || looked != id) {
			t.Fatalf("verified, but Scope = %q %q %t", id, service, ok)
		}
	})
}
